package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/streams"
)

// topology is what the worker reads from and writes to.
type topology struct {
	eventsStream string
	consumer     jetstream.Consumer
	kv           jetstream.KeyValue
	projects     jetstream.KeyValue
}

// ensureTopology finds or creates the streams, the consumer and the bucket.
// A stream that already captures a subject is used as it is (found by
// subject); otherwise the worker creates its own. What the worker creates
// gets Config.Replicas (raised, never lowered); a producer's stream is left
// alone. Each request is retried until ctx ends, so that workers starting
// together on a cluster all come up.
func ensureTopology(ctx context.Context, js jetstream.JetStream, c Config, e *streams.Ensurer) (*topology, error) {
	inputs := slices.Sorted(maps.Keys(c.Subjects))
	events, err := ensureStream(ctx, e, c, c.EventsStream, inputs, c.Retention, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, e, c, c.ResultsStream, []string{c.ProvisionedSubject, c.UpdatedSubject, c.ClosedSubject, c.FailedSubject}, c.Retention, 10*time.Minute); err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, e, c, c.DeadLetterStream, []string{c.DeadLetterSubject + ".>"}, 0, 10*time.Minute); err != nil {
		return nil, err
	}
	// A paused consumer stays paused: nats-server keeps PauseUntil on update
	// (only the pause API changes it), so a worker started later waits too.
	// Its replicas follow its stream's.
	var cons jetstream.Consumer
	err = e.Retry(ctx, fmt.Sprintf("consumer %q on stream %q", c.Consumer, events), func(ctx context.Context) (err error) {
		cons, err = js.CreateOrUpdateConsumer(ctx, events, jetstream.ConsumerConfig{
			Durable:        c.Consumer,
			Description:    "DingTalk group provisioner",
			FilterSubjects: inputs,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        c.AckWait,
			MaxDeliver:     -1, // retries end by the worker's own budget, with a result; never stranded
			MaxAckPending:  c.MaxAckPending,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	kv, err := e.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.Bucket,
		Description: "DingTalk group provisioner: one step record per event",
		TTL:         c.Retention,
		History:     1,
		Storage:     c.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	projects, err := e.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.ProjectBucket,
		Description: "DingTalk group provisioner: one record per project, kept as long as the project",
		History:     1,
		Storage:     c.Storage,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &topology{eventsStream: events, consumer: cons, kv: kv, projects: projects}, nil
}

// ensureStream returns the stream that captures subjects: the existing one if
// any stream captures the first subject (left alone, but for a warning when
// it keeps fewer replicas than the worker's), else a new stream called name.
func ensureStream(ctx context.Context, e *streams.Ensurer, c Config, name string, subjects []string, maxAge, dupWindow time.Duration) (string, error) {
	found := make([]string, len(subjects)) // the stream capturing each subject, "" for none
	for i, subj := range subjects {
		err := e.Retry(ctx, fmt.Sprintf("looking up the stream for %q", subj), func(ctx context.Context) (err error) {
			found[i], err = e.JS.StreamNameBySubject(ctx, subj)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				found[i], err = "", nil
			}
			return err
		})
		if err != nil {
			return "", fmt.Errorf("worker: %w", err)
		}
	}
	var foreign string
	for _, f := range found {
		if f != "" && f != name {
			foreign = f
		}
	}
	if foreign != "" {
		for i, s := range subjects {
			if found[i] != foreign {
				return "", fmt.Errorf("worker: stream %q captures some of the input subjects but not %q; one stream must capture them all (add it to that stream)", foreign, s)
			}
		}
		if err := e.CheckForeign(ctx, foreign); err != nil {
			return "", fmt.Errorf("worker: %w", err)
		}
		return foreign, nil
	}
	_, err := e.Stream(ctx, jetstream.StreamConfig{
		Name:       name,
		Subjects:   subjects,
		Storage:    c.Storage,
		MaxAge:     maxAge,
		Duplicates: dupWindow,
	})
	if err != nil {
		return "", fmt.Errorf("worker: creating stream %q for %v: %w", name, subjects, err)
	}
	return name, nil
}
