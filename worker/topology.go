package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// topology is what the worker reads from and writes to.
type topology struct {
	eventsStream string
	consumer     jetstream.Consumer
	kv           jetstream.KeyValue
}

// ensureTopology finds or creates the streams, the consumer and the bucket.
// A stream that already captures a subject is used as it is (found by
// subject); otherwise the worker creates its own.
func ensureTopology(ctx context.Context, js jetstream.JetStream, c Config) (*topology, error) {
	inputs := slices.Sorted(maps.Keys(c.Subjects))
	events, err := ensureStream(ctx, js, c, c.EventsStream, inputs, c.Retention, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, js, c, c.ResultsStream, []string{c.ProvisionedSubject, c.FailedSubject}, c.Retention, 10*time.Minute); err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, js, c, c.DeadLetterStream, []string{c.DeadLetterSubject + ".>"}, 0, 10*time.Minute); err != nil {
		return nil, err
	}
	// A paused consumer stays paused: nats-server keeps PauseUntil on update
	// (only the pause API changes it), so a worker started later waits too.
	cons, err := js.CreateOrUpdateConsumer(ctx, events, jetstream.ConsumerConfig{
		Durable:        c.Consumer,
		Description:    "DingTalk group provisioner",
		FilterSubjects: inputs,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     -1, // retries end by the worker's own budget, with a result; never stranded
		MaxAckPending:  c.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: consumer %q on stream %q: %w", c.Consumer, events, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.Bucket,
		Description: "DingTalk group provisioner: one step record per event",
		TTL:         c.Retention,
		History:     1,
		Storage:     c.Storage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: key-value bucket %q: %w", c.Bucket, err)
	}
	return &topology{eventsStream: events, consumer: cons, kv: kv}, nil
}

// ensureStream returns the stream that captures subjects: the existing one if
// any stream captures the first subject, else a new stream called name.
func ensureStream(ctx context.Context, js jetstream.JetStream, c Config, name string, subjects []string, maxAge, dupWindow time.Duration) (string, error) {
	found, err := js.StreamNameBySubject(ctx, subjects[0])
	switch {
	case err == nil:
		for _, s := range subjects[1:] {
			other, err := js.StreamNameBySubject(ctx, s)
			if err != nil || other != found {
				return "", fmt.Errorf("worker: subject %q is captured by stream %q but %q is not; one stream must capture them all", subjects[0], found, s)
			}
		}
		return found, nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return "", fmt.Errorf("worker: looking up the stream for %q: %w", subjects[0], err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       name,
		Subjects:   subjects,
		Storage:    c.Storage,
		Replicas:   c.Replicas,
		MaxAge:     maxAge,
		Duplicates: dupWindow,
	})
	if err != nil {
		return "", fmt.Errorf("worker: creating stream %q for %v: %w", name, subjects, err)
	}
	return name, nil
}
