package projects

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stored is one project record as the bucket holds it.
type Stored struct {
	Key      string
	Revision uint64
	Written  time.Time // when this revision was written
	Record   Record
}

// Scan calls fn with every project record, in the order they were last
// written, and stops at the first error fn returns. A record that cannot be
// read (or that a newer release wrote) is skipped: Scan is for sweeping and
// searching, never for changing a record it does not understand.
func (s *Store) Scan(ctx context.Context, fn func(Stored) error) error {
	return s.scan(ctx, true, func(e jetstream.KeyValueEntry) error {
		rec, err := decode(e.Key(), e.Value())
		if err != nil {
			return nil
		}
		return fn(Stored{Key: e.Key(), Revision: e.Revision(), Written: e.Created(), Record: rec})
	})
}

// scan calls fn with every project key's last entry (deletions too unless
// ignoreDeletes), as they stood when it began.
func (s *Store) scan(ctx context.Context, ignoreDeletes bool, fn func(jetstream.KeyValueEntry) error) error {
	var opts []jetstream.WatchOpt
	if ignoreDeletes {
		opts = append(opts, jetstream.IgnoreDeletes())
	}
	w, err := s.kv.WatchFiltered(ctx, []string{"project.>", "event.>"}, opts...)
	if err != nil {
		return fmt.Errorf("projects: scanning the records: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("projects: scanning the records: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("projects: scanning the records: the watch closed")
			}
			if e == nil { // every record as it stood when the scan began
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// Expire forgets every closed project whose close is more than retention
// old, and returns how many it forgot; it also removes the markers that
// deleting an empty record left. Each record is removed from stream
// (the bucket's own stream, KV_<bucket>) by a purge bounded by the revision
// read: if anything wrote the record since, that write survives. A purge
// leaves no marker behind, so the bucket shrinks by the whole record, and
// it needs nothing of the bucket's configuration or of the server's version.
func (s *Store) Expire(ctx context.Context, stream jetstream.Stream, retention time.Duration) (int, error) {
	now := s.now()
	var due []Stored
	var markers []jetstream.KeyValueEntry // what deleting an empty record left (see Lock.Unlock)
	err := s.scan(ctx, false, func(e jetstream.KeyValueEntry) error {
		if e.Operation() != jetstream.KeyValuePut {
			markers = append(markers, e)
			return nil
		}
		rec, err := decode(e.Key(), e.Value())
		if err != nil {
			return nil
		}
		if at := rec.ExpiresAt(retention); !at.IsZero() && !at.After(now) && !rec.LeaseUntil.After(now) {
			due = append(due, Stored{Key: e.Key(), Revision: e.Revision(), Written: e.Created(), Record: rec})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	bucket := s.kv.Bucket()
	n := 0
	for _, st := range due {
		subjects := []string{"$KV." + bucket + "." + st.Key}
		if st.Record.Adopted {
			subjects = append(subjects, "$KV."+bucket+"."+AdoptionKey(GroupID(&st.Record)))
		}
		for i, subj := range subjects {
			seq := st.Revision + 1
			if i > 0 {
				seq = 0 // the adoption's index entry: written once, before the record's revision
			}
			opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSubject(subj)}
			if seq > 0 {
				opts = append(opts, jetstream.WithPurgeSequence(seq))
			}
			if err := stream.Purge(ctx, opts...); err != nil {
				return n, fmt.Errorf("projects: forgetting %s: %w", st.Key, err)
			}
		}
		n++
	}
	for _, m := range markers {
		err := stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+m.Key()), jetstream.WithPurgeSequence(m.Revision()+1))
		if err != nil {
			return n, fmt.Errorf("projects: removing the deletion marker of %s: %w", m.Key(), err)
		}
	}
	return n, nil
}
