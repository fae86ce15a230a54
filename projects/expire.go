package projects

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/kvread"
)

// Stored is one project record as the bucket holds it.
type Stored struct {
	Key      string
	Revision uint64
	Record   Record
}

// Scan calls fn with every project record, in the order they were last
// written, and stops at the first error fn returns. A record that cannot be
// read (or that a newer release wrote) is skipped: Scan is for sweeping and
// searching, never for changing a record it does not understand.
func (s *Store) Scan(ctx context.Context, fn func(Stored) error) error {
	return s.scan(ctx, func(e kvread.Entry) error {
		if e.Deleted {
			return nil
		}
		rec, err := decode(e.Key, e.Value)
		if err != nil {
			return nil
		}
		return fn(Stored{Key: e.Key, Revision: e.Revision, Record: rec})
	})
}

// scan calls fn with every project key's last entry, deletions included.
func (s *Store) scan(ctx context.Context, fn func(kvread.Entry) error) error {
	if err := kvread.Read(ctx, s.js, s.kv.Bucket(), 0, []string{"project.>", "event.>"}, fn); err != nil {
		return fmt.Errorf("projects: scanning the records: %w", err)
	}
	return nil
}

// Expire forgets every closed project whose close is more than retention
// old, and returns how many it forgot; it also removes the markers that
// deleting an empty record left. Each record is removed from stream
// (the bucket's own stream, KV_<bucket>) by a purge bounded by the revision
// read: if anything wrote the record since, that write survives. A purge
// leaves no marker behind, so the bucket shrinks by the whole record, and
// it needs nothing of the bucket's configuration or of the server's version.
func (s *Store) Expire(ctx context.Context, retention time.Duration) (int, error) {
	now := s.now()
	var due []Stored
	var markers []kvread.Entry // what deleting an empty record left (see Lock.Unlock)
	err := s.scan(ctx, func(e kvread.Entry) error {
		if e.Deleted {
			markers = append(markers, e)
			return nil
		}
		rec, err := decode(e.Key, e.Value)
		if err != nil {
			return nil
		}
		if at := rec.ExpiresAt(retention); !at.IsZero() && !at.After(now) && !rec.LeaseUntil.After(now) {
			due = append(due, Stored{Key: e.Key, Revision: e.Revision, Record: rec})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	bucket := s.kv.Bucket()
	stream, err := s.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return 0, fmt.Errorf("projects: the records' stream: %w", err)
	}
	n := 0
	for _, st := range due {
		// The record, and its group's index entries (the group index, the
		// adoption's): each written before the record's revision read.
		subjects := []string{"$KV." + bucket + "." + st.Key}
		if id := indexID(&st.Record); id != "" {
			subjects = append(subjects, "$KV."+bucket+"."+GroupKey(id))
		}
		if st.Record.Adopted {
			subjects = append(subjects, "$KV."+bucket+"."+AdoptionKey(GroupID(&st.Record)))
		}
		for _, subj := range subjects {
			seq := st.Revision + 1
			if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(seq)); err != nil {
				return n, fmt.Errorf("projects: forgetting %s: %w", st.Key, err)
			}
		}
		n++
	}
	for _, m := range markers {
		err := stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+m.Key), jetstream.WithPurgeSequence(m.Revision+1))
		if err != nil {
			return n, fmt.Errorf("projects: removing the deletion marker of %s: %w", m.Key, err)
		}
	}
	return n, nil
}
