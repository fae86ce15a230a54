package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
	"provisioner/streams"
)

// topology is what the worker reads from and writes to.
type topology struct {
	eventsStream string
	foreign      bool // the events stream is a producer's: never edited
	consumer     jetstream.Consumer
	kv           jetstream.KeyValue
	projects     jetstream.KeyValue
	hands        jetstream.Consumer // DingTalk's events; nil unless Config.HandEvents
}

// contractKey is the consumer metadata key naming the contract version of
// the release that last configured it (messages.Contract).
const contractKey = "provisioner_contract"

// ensureTopology finds or creates the streams, the consumer and the buckets.
// A stream that already captures a subject is used as it is (found by
// subject); subjects no stream captures go to a stream the worker owns,
// except input subjects when a producer's stream captures the others (see
// ensureInputs). What the worker creates gets Config.Replicas (raised, never
// lowered); a producer's stream is never edited. Each request is retried
// until ctx ends, so that workers starting together on a cluster all come up.
func ensureTopology(ctx context.Context, js jetstream.JetStream, c Config, e *streams.Ensurer) (*topology, capture, error) {
	in, err := ensureInputs(ctx, e, c)
	if err != nil {
		return nil, capture{}, err
	}
	results := []string{c.ProvisionedSubject, c.UpdatedSubject, c.ClosedSubject, c.FailedSubject, c.ChangedSubject}
	if err := ensureOutputs(ctx, e, c, c.ResultsStream, results, c.Retention, 10*time.Minute); err != nil {
		return nil, capture{}, err
	}
	if err := ensureOutputs(ctx, e, c, c.DeadLetterStream, []string{c.DeadLetterSubject + ".>"}, 0, 10*time.Minute); err != nil {
		return nil, capture{}, err
	}
	cons, newer, err := ensureConsumer(ctx, js, c, e, in)
	if err != nil {
		return nil, capture{}, err
	}
	in.newer = newer
	kv, err := e.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.Bucket,
		Description: "DingTalk group provisioner: one step record per event",
		TTL:         c.Retention,
		History:     1,
		Storage:     c.Storage,
	})
	if err != nil {
		return nil, capture{}, fmt.Errorf("worker: %w", err)
	}
	projects, err := e.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.ProjectBucket,
		Description: "DingTalk group provisioner: one record per project, forgotten RETENTION after its close",
		History:     1,
		Storage:     c.Storage,
	})
	if err != nil {
		return nil, capture{}, fmt.Errorf("worker: %w", err)
	}
	var hands jetstream.Consumer
	if c.HandEvents {
		if hands, err = ensureHands(ctx, js, c, e); err != nil {
			return nil, capture{}, err
		}
	}
	return &topology{eventsStream: in.stream, foreign: in.foreign, consumer: cons, kv: kv, projects: projects, hands: hands}, in, nil
}

// capture is how the input subjects are captured: the stream the consumer
// reads, the subjects it captures, and those no stream captures.
type capture struct {
	stream   string
	foreign  bool     // a producer's stream, never edited
	captured []string // sorted
	missing  []string // sorted: events published on them are refused by JetStream
	streamOf []string // the stream's own subjects, for the command that adds the missing ones
	newer    int      // the consumer's contract, when a newer release configured it (0: not newer)
}

// editCommand is the nats CLI command that adds the missing subjects to the
// producer's stream.
func (c capture) editCommand() string {
	if len(c.missing) == 0 {
		return ""
	}
	all := slices.Concat(c.streamOf, c.missing)
	return fmt.Sprintf("nats stream edit %s --subjects %q", c.stream, strings.Join(all, ","))
}

// findStreams looks up the stream capturing each subject ("" for none).
func findStreams(ctx context.Context, e *streams.Ensurer, subjects []string) ([]string, error) {
	found := make([]string, len(subjects))
	for i, subj := range subjects {
		err := e.Retry(ctx, fmt.Sprintf("looking up the stream for %q", subj), func(ctx context.Context) (err error) {
			found[i], err = e.JS.StreamNameBySubject(ctx, subj)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				found[i], err = "", nil
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	return found, nil
}

// ensureInputs finds the stream the input subjects arrive on. When a
// producer's stream captures some of them, the worker consumes those and
// reports the rest as missing: it never edits that stream, and it cannot
// make a stream of its own for them (JetStream refuses two streams with
// overlapping subjects, so the producer could then not add them). Otherwise
// the worker's own stream captures them all.
func ensureInputs(ctx context.Context, e *streams.Ensurer, c Config) (capture, error) {
	inputs := slices.Sorted(maps.Keys(c.Subjects))
	found, err := findStreams(ctx, e, inputs)
	if err != nil {
		return capture{}, err
	}
	var foreign []string
	for _, f := range found {
		if f != "" && f != c.EventsStream && !slices.Contains(foreign, f) {
			foreign = append(foreign, f)
		}
	}
	switch {
	case len(foreign) > 1 || (len(foreign) == 1 && slices.Contains(found, c.EventsStream)):
		return capture{}, fmt.Errorf("worker: the input subjects are captured by several streams (%s): one durable consumer reads one stream; move them into one",
			strings.Join(slices.Compact(slices.Sorted(slices.Values(slices.DeleteFunc(slices.Clone(found), func(s string) bool { return s == "" })))), ", "))
	case len(foreign) == 1:
		cp := capture{stream: foreign[0], foreign: true}
		for i, s := range inputs {
			if found[i] == "" {
				cp.missing = append(cp.missing, s)
			} else {
				cp.captured = append(cp.captured, s)
			}
		}
		if err := e.CheckForeign(ctx, cp.stream); err != nil {
			return capture{}, fmt.Errorf("worker: %w", err)
		}
		cp.streamOf, err = streamSubjects(ctx, e, cp.stream)
		return cp, err
	}
	subjects, err := keepSubjects(ctx, e, c.EventsStream, inputs)
	if err != nil {
		return capture{}, err
	}
	_, err = e.Stream(ctx, jetstream.StreamConfig{
		Name: c.EventsStream, Subjects: subjects, Storage: c.Storage, MaxAge: c.Retention, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return capture{}, fmt.Errorf("worker: creating stream %q for %v: %w", c.EventsStream, subjects, err)
	}
	return capture{stream: c.EventsStream, captured: inputs, streamOf: subjects}, nil
}

// keepSubjects is what the worker's own stream called name must capture:
// want, and whatever it captures already. A newer release may have added
// subjects this one does not know; removing them would refuse the newer
// producers' events.
func keepSubjects(ctx context.Context, e *streams.Ensurer, name string, want []string) ([]string, error) {
	have, err := streamSubjects(ctx, e, name)
	if err != nil {
		return nil, err
	}
	return slices.Compact(slices.Sorted(slices.Values(slices.Concat(have, want)))), nil
}

// streamSubjects reads a stream's configured subjects; none when there is
// no such stream.
func streamSubjects(ctx context.Context, e *streams.Ensurer, name string) ([]string, error) {
	var subjects []string
	err := e.Retry(ctx, fmt.Sprintf("stream %q", name), func(ctx context.Context) error {
		s, err := e.JS.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		subjects = s.CachedInfo().Config.Subjects
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return subjects, nil
}

// ensureOutputs makes sure every one of subjects is captured: those a
// stream of someone else's captures (a downstream team's) are left to it;
// the rest go to the worker's own stream called name, created or widened.
func ensureOutputs(ctx context.Context, e *streams.Ensurer, c Config, name string, subjects []string, maxAge, dupWindow time.Duration) error {
	found, err := findStreams(ctx, e, subjects)
	if err != nil {
		return err
	}
	var own []string
	for i, s := range subjects {
		if found[i] == "" || found[i] == name {
			own = append(own, s)
		} else if err := e.CheckForeign(ctx, found[i]); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	if len(own) == 0 {
		return nil
	}
	if own, err = keepSubjects(ctx, e, name, own); err != nil {
		return err
	}
	if _, err := e.Stream(ctx, jetstream.StreamConfig{Name: name, Subjects: own, Storage: c.Storage, MaxAge: maxAge, Duplicates: dupWindow}); err != nil {
		return fmt.Errorf("worker: creating stream %q for %v: %w", name, own, err)
	}
	return nil
}

// ensureConsumer creates or updates the durable consumer to read the
// captured input subjects, and records this release's contract on it. A
// consumer a newer release configured (a higher contract) is left as it is,
// so that this worker never narrows what the newer one consumes; newer is
// then that contract. A paused consumer stays paused: nats-server keeps
// PauseUntil on update (only the pause API changes it). Its replicas follow
// its stream's.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, c Config, e *streams.Ensurer, in capture) (cons jetstream.Consumer, newer int, err error) {
	err = e.Retry(ctx, fmt.Sprintf("consumer %q on stream %q", c.Consumer, in.stream), func(ctx context.Context) error {
		existing, err := js.Consumer(ctx, in.stream, c.Consumer)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
		case err != nil:
			return err
		default:
			if v, _ := strconv.Atoi(existing.CachedInfo().Config.Metadata[contractKey]); v > messages.Contract {
				cons, newer = existing, v
				return nil
			}
		}
		cons, err = js.CreateOrUpdateConsumer(ctx, in.stream, consumerConfig(c, in.captured))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("worker: %w", err)
	}
	return cons, newer, nil
}

func consumerConfig(c Config, filter []string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Consumer,
		Description:    "DingTalk group provisioner",
		FilterSubjects: filter,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     -1, // retries end by the worker's own budget, with a result; never stranded
		MaxAckPending:  c.MaxAckPending,
		Metadata:       map[string]string{contractKey: strconv.Itoa(messages.Contract)},
	}
}
