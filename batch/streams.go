package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Streams says where a batch's events go and where their results come from.
// It is a plain value.
type Streams struct {
	Subject             string // the batch's subject
	Events              string // the stream that captures Subject
	Results             string // the stream that captures the result subjects
	Provisioned, Failed string // the result subjects
	Updated             string // group.updated; "" when no stream captures it (a worker older than updates)
}

// filter is the result subjects to read.
func (s Streams) filter() []string {
	if s.Updated == "" {
		return []string{s.Provisioned, s.Failed}
	}
	return []string{s.Provisioned, s.Updated, s.Failed}
}

// status is what a result on subject says of its row.
func (s Streams) status(subject string) Status {
	switch subject {
	case s.Provisioned:
		return Provisioned
	case s.Updated:
		return Updated
	}
	return Failed
}

// Locate finds the streams that capture subject and the result subjects:
// the ones the workers made, or were given.
func Locate(ctx context.Context, js jetstream.JetStream, subject, provisioned, updated, failed string) (Streams, error) {
	s := Streams{Subject: subject, Provisioned: provisioned, Failed: failed}
	var err error
	if s.Events, err = streamFor(ctx, js, subject); err != nil {
		return s, err
	}
	if s.Results, err = streamFor(ctx, js, provisioned); err != nil {
		return s, err
	}
	other, err := streamFor(ctx, js, failed)
	if err != nil {
		return s, err
	}
	if other != s.Results {
		return s, fmt.Errorf("batch: %q is in stream %q but %q in %q; the workers keep both in one", provisioned, s.Results, failed, other)
	}
	if other, err := streamFor(ctx, js, updated); err == nil && other == s.Results {
		s.Updated = updated
	}
	return s, nil
}

func streamFor(ctx context.Context, js jetstream.JetStream, subject string) (string, error) {
	name, err := js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", fmt.Errorf("batch: no stream captures %q: start provisioner run once, and it makes its streams", subject)
	}
	if err != nil {
		return "", fmt.Errorf("batch: looking up the stream for %q: %w", subject, err)
	}
	return name, nil
}

// stored counts the messages on subjects in a stream.
func stored(ctx context.Context, js jetstream.JetStream, stream string, subjects ...string) (uint64, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("batch: stream %q: %w", stream, err)
	}
	var n uint64
	for _, subject := range subjects {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return 0, fmt.Errorf("batch: stream %q: %w", stream, err)
		}
		n += info.State.Subjects[subject]
	}
	return n, nil
}

// Follow reads the results stream from its first message into t, and goes
// on with each result as it arrives, until stop is called. caughtUp is
// closed once every result stored when Follow started has been read: from
// then on, a row without a result has none yet.
func Follow(ctx context.Context, js jetstream.JetStream, s Streams, t *Tracker) (caughtUp <-chan struct{}, stop func(), err error) {
	before, err := stored(ctx, js, s.Results, s.filter()...)
	if err != nil {
		return nil, nil, err
	}
	cons, err := js.OrderedConsumer(ctx, s.Results, jetstream.OrderedConsumerConfig{FilterSubjects: s.filter()})
	if err != nil {
		return nil, nil, fmt.Errorf("batch: reading stream %q: %w", s.Results, err)
	}
	caught := make(chan struct{})
	var once sync.Once
	markCaughtUp := func() { once.Do(func() { close(caught) }) }
	if before == 0 {
		markCaughtUp()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if key, r, err := ParseResult(s.status(m.Subject()), m.Data()); err == nil {
			t.Record(key, r)
		} // a result that is not the worker's is no row's
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			markCaughtUp()
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("batch: reading stream %q: %w", s.Results, err)
	}
	return caught, cc.Stop, nil
}

// Published reads the message ids of the events on the batch's subject and
// returns the keys of the rows an earlier run published (see MsgID). Only
// headers are read. progress, if not nil, is told how many of how many
// messages have been read.
func Published(ctx context.Context, js jetstream.JetStream, s Streams, progress func(read, total uint64)) (map[string]bool, error) {
	out := map[string]bool{}
	total, err := stored(ctx, js, s.Events, s.Subject)
	if err != nil || total == 0 {
		return out, err
	}
	cons, err := js.OrderedConsumer(ctx, s.Events, jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.Subject}, HeadersOnly: true})
	if err != nil {
		return nil, fmt.Errorf("batch: reading stream %q: %w", s.Events, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("batch: reading stream %q: %w", s.Events, err)
	}
	defer it.Stop()
	prefix := s.Subject + "-"
	for read := uint64(1); ; read++ {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("batch: reading stream %q: %w", s.Events, err)
		}
		if key, ok := strings.CutPrefix(m.Headers().Get(jetstream.MsgIDHeader), prefix); ok {
			out[key] = true
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("batch: reading stream %q: %w", s.Events, err)
		}
		if progress != nil && (read%1000 == 0 || md.NumPending == 0) {
			progress(read, max(total, read+md.NumPending))
		}
		if md.NumPending == 0 {
			return out, nil
		}
	}
}
