// Package kvread reads a JetStream key-value bucket's entries as they stand,
// with an ephemeral pull consumer read until nothing is left. Unlike a
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

// answerWait bounds the wait for one pull's answer: a connection lost
// while a pull is out would otherwise leave it waiting for the client's
// own expiry (30 s), whatever the caller's context says.
const answerWait = 5 * time.Second

// each calls fn with every message of one pull, until the pull is answered
// in full, ctx ends or answerWait passes; it returns how many it saw.
func each(ctx context.Context, msgs jetstream.MessageBatch, fn func(jetstream.Msg) error) (int, error) {
	timer := time.NewTimer(answerWait)
	defer timer.Stop()
	ch := msgs.Messages()
	for n := 0; ; n++ {
		select {
		case m, ok := <-ch:
			if !ok {
				return n, nil
			}
			if err := fn(m); err != nil {
				return n, err
			}
		case <-ctx.Done():
			return n, ctx.Err()
		case <-timer.C:
			return n, fmt.Errorf("no answer to a pull within %v", answerWait)
		}
	}
}

// Read calls fn with the last entry of every key of bucket that matches one
// of keys (patterns as kv.Watch takes them, "project.>"; none: every key)
// and was written at revision from or later (0: all), in revision order.
// It stops at the first error fn returns.
func Read(ctx context.Context, js jetstream.JetStream, bucket string, from uint64, keys []string, fn func(Entry) error) error {
	prefix := "$KV." + bucket + "."
	// A plain ephemeral pull consumer, not an ordered one: an ordered
	// consumer whose connection is lost recreates itself, retrying for
	// ever, inside FetchNoWait (nats.go 1.55, ordered.go reset), and the
	// caller's context cannot stop it.
	cfg := jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, AckPolicy: jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, MemoryStorage: true, Replicas: 1}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	for _, k := range keys {
		cfg.FilterSubjects = append(cfg.FilterSubjects, prefix+k)
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{prefix + ">"}
	}
	cons, err := js.CreateConsumer(ctx, "KV_"+bucket, cfg)
	if err != nil {
		return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, "KV_"+bucket, cons.CachedInfo().Name) // else it goes by itself after a minute idle
	}()
	// What the consumer holds when made is what the read must see: a pull
	// refused (a permission missing) answers nothing, like an empty bucket.
	pending, read := cons.CachedInfo().NumPending, uint64(0)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
		}
		msgs, err := cons.FetchNoWait(batch)
		if err != nil {
			return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
		}
		var fnErr error
		n, err := each(ctx, msgs, func(m jetstream.Msg) error {
			meta, err := m.Metadata()
			if err != nil {
				return err
			}
			op := m.Headers().Get("KV-Operation")
			fnErr = fn(Entry{Key: strings.TrimPrefix(m.Subject(), prefix), Revision: meta.Sequence.Stream, Created: meta.Timestamp,
				Value: m.Data(), Deleted: op == "DEL" || op == "PURGE"})
			return fnErr
		})
		if fnErr != nil {
			return fnErr
		}
		if err != nil {
			return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("kvread: reading bucket %s: %w", bucket, err)
		}
		read += uint64(n)
		if n == 0 {
			if read < pending {
				return fmt.Errorf("kvread: reading bucket %s: %d of the %d entries came (was a pull refused?)", bucket, read, pending)
			}
			return nil
		}
	}
}
