// Package kvread reads a JetStream key-value bucket's entries as they stand,
// with a pull-based ordered consumer read until nothing is left. Unlike a
// KV watcher, whose "initial values done" marker can fail to come (an empty
// bucket on a cluster still forming), a read here always ends: at the last
// entry, on an error, or when its context does.
package kvread

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Entry is a key's last entry.
type Entry struct {
	Key      string
	Revision uint64
	Created  time.Time
	Value    []byte
	Deleted  bool // a delete or purge marker: Value is empty
}

// batch is how many entries one pull asks for.
const batch = 512

// Read calls fn with the last entry of every key of bucket that matches one
// of keys (patterns as kv.Watch takes them, "project.>"; none: every key)
// and was written at revision from or later (0: all), in revision order.
// It stops at the first error fn returns.
func Read(ctx context.Context, js jetstream.JetStream, bucket string, from uint64, keys []string, fn func(Entry) error) error {
	prefix := "$KV." + bucket + "."
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	for _, k := range keys {
		cfg.FilterSubjects = append(cfg.FilterSubjects, prefix+k)
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{prefix + ">"}
	}
	cons, err := js.OrderedConsumer(ctx, "KV_"+bucket, cfg)
	if err != nil {
		return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
	}
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = js.DeleteConsumer(dctx, "KV_"+bucket, info.Name) // it would go by itself after 5 minutes idle
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
		}
		msgs, err := cons.FetchNoWait(batch)
		if err != nil {
			return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
		}
		n := 0
		for m := range msgs.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
			}
			op := m.Headers().Get("KV-Operation")
			e := Entry{Key: strings.TrimPrefix(m.Subject(), prefix), Revision: meta.Sequence.Stream, Created: meta.Timestamp,
				Value: m.Data(), Deleted: op == "DEL" || op == "PURGE"}
			if err := fn(e); err != nil {
				return err
			}
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
		}
		if n == 0 {
			return nil
		}
	}
}
