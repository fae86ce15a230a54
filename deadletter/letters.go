// Package deadletter is the operator's side of the workers' dead letters:
// list them, and replay them (forget each event's remembered failure and
// publish the original again, counting replays so that an event that keeps
// failing is not replayed in a loop). The workers write the letters; see
// worker.Config.DeadLetterSubject.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
	"provisioner/worker"
)

// MaxReplays is how many times a letter may be replayed without Force.
const MaxReplays = 3

// Options says where the letters and the step records are.
type Options struct {
	Worker worker.Config // the workers' configuration: subjects, bucket, dead-letter subject
}

// Letters reads and replays the dead letters. Create it with Open; safe for
// concurrent use, though replays of one letter should not run at once.
type Letters struct {
	js      jetstream.JetStream
	stream  string
	prefix  string // the dead-letter subject, without the trailing "."
	kinds   map[string]messages.Kind
	records *worker.Records
}

// Open finds the dead-letter stream and the step records.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Letters, error) {
	cfg := o.Worker
	if cfg.DeadLetterSubject == "" {
		cfg.DeadLetterSubject = "provisioner.dead_letter"
	}
	if len(cfg.Subjects) == 0 {
		cfg.Subjects = worker.DefaultSubjects()
	}
	stream, err := js.StreamNameBySubject(ctx, cfg.DeadLetterSubject+".>")
	if err != nil {
		return nil, fmt.Errorf("deadletter: finding the stream of %s.>: %w (has a worker run here?)", cfg.DeadLetterSubject, err)
	}
	recs, err := worker.OpenRecords(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("deadletter: %w", err)
	}
	return &Letters{js: js, stream: stream, prefix: cfg.DeadLetterSubject, kinds: cfg.Subjects, records: recs}, nil
}

// Letter is one dead letter: the original event, payload and headers, with
// why it failed.
type Letter struct {
	Seq           uint64 // in the dead-letter stream
	SourceSubject string // where the event arrived, and where a replay publishes it
	EventID       string // "" when the body had none that could be read
	Reason        string // the failure's reason word
	Message       string // the failure, in a sentence
	Time          time.Time
	Replays       int // how many times the event was replayed before this letter
	Msg           *jetstream.RawStreamMsg
}

// Filter picks letters; the zero Filter picks all.
type Filter struct {
	Reason  string    // only this reason
	Subject string    // only events from this subject
	Since   time.Time // only letters written at or after
	Seqs    []uint64  // only these letters
}

func (f Filter) picks(l *Letter) bool {
	switch {
	case f.Reason != "" && l.Reason != f.Reason,
		f.Subject != "" && l.SourceSubject != f.Subject,
		!f.Since.IsZero() && l.Time.Before(f.Since):
		return false
	case len(f.Seqs) > 0:
		for _, s := range f.Seqs {
			if s == l.Seq {
				return true
			}
		}
		return false
	}
	return true
}

// List returns the letters f picks, oldest first, as they are now.
func (l *Letters) List(ctx context.Context, f Filter) ([]Letter, error) {
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return nil, fmt.Errorf("deadletter: stream %q: %w", l.stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("deadletter: stream %q: %w", l.stream, err)
	}
	filter := l.prefix + ".>"
	if f.Subject != "" {
		filter = l.prefix + "." + f.Subject
	}
	var out []Letter
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break // nothing more on the subject
		}
		if err != nil {
			return nil, fmt.Errorf("deadletter: reading letter %d: %w", seq, err)
		}
		seq = raw.Sequence
		letter := l.letter(raw)
		if f.picks(&letter) {
			out = append(out, letter)
		}
	}
	return out, nil
}

// letter reads a stored message as a Letter.
func (l *Letters) letter(raw *jetstream.RawStreamMsg) Letter {
	h := raw.Header
	out := Letter{Seq: raw.Sequence, Time: raw.Time, Msg: raw,
		SourceSubject: h.Get(worker.HeaderSourceSubject), Reason: h.Get(worker.HeaderReason), Message: h.Get(worker.HeaderError)}
	if out.SourceSubject == "" {
		out.SourceSubject = strings.TrimPrefix(raw.Subject, l.prefix+".")
	}
	out.Replays, _ = strconv.Atoi(h.Get(worker.HeaderReplays))
	if ev, err := messages.Decode(out.SourceSubject, l.kinds, raw.Data); err == nil {
		out.EventID = ev.ID
	} else if inv := (*messages.InvalidError)(nil); errors.As(err, &inv) {
		out.EventID = inv.ID
	}
	return out
}
