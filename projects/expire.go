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
	w, err := s.kv.WatchFiltered(ctx, []string{"project.>", "event.>"}, jetstream.IgnoreDeletes())
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
			rec, err := decode(e.Key(), e.Value())
			if err != nil {
				continue
			}
			if err := fn(Stored{Key: e.Key(), Revision: e.Revision(), Written: e.Created(), Record: rec}); err != nil {
				return err
			}
		}
	}
}

// Expire forgets every closed project whose close is more than retention
// old, and returns how many it forgot. Each record is removed from stream
// (the bucket's own stream, KV_<bucket>) by a purge bounded by the revision
// read: if anything wrote the record since, that write survives. A purge
// leaves no marker behind, so the bucket shrinks by the whole record, and
// it needs nothing of the bucket's configuration or of the server's version.
func (s *Store) Expire(ctx context.Context, stream jetstream.Stream, retention time.Duration) (int, error) {
	now := s.now()
	var due []Stored
	err := s.Scan(ctx, func(st Stored) error {
		if at := st.Record.ExpiresAt(retention); !at.IsZero() && !at.After(now) && !st.Record.LeaseUntil.After(now) {
			due = append(due, st)
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
	return n, nil
}
