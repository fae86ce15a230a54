// Package deadletter is the operator's side of the workers' dead letters:
// list them, and replay them (forget each event's remembered failure and
// publish the original again, counting replays so that an event that keeps
// failing is not replayed in a loop). The workers write the letters (see
// worker.Config.DeadLetterSubject) and keep the step records a replay
// consults (Records; worker.Records is one). It does not import the
// worker: the operators' tools need only this and the contract.
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
)

// MaxReplays is how many times a letter may be replayed without Force.
const MaxReplays = 3

// Options says where the letters are, and gives the step records.
type Options struct {
	DeadLetterSubject string                   // the workers' DeadLetterSubject; default provisioner.dead_letter
	Subjects          map[string]messages.Kind // the input subjects and their kinds; default the contract's
	Records           Records                  // the workers' step records; required
}

// Records is what a replay needs of the workers' step records:
// worker.Records is one.
type Records interface {
	// CheckReplay reads what an event's record says about replaying it.
	CheckReplay(ctx context.Context, subject, eventID string) (ReplayCheck, error)
	// ForgetFailure rewrites a failed event's record so that its next
	// delivery works it again, as replay number replays of letter
	// letterSeq; ErrNotFailed when the record no longer holds a failure.
	ForgetFailure(ctx context.Context, subject, eventID string, letterSeq uint64, replays int) error
}

// ReplayState is what an event's step record says about replaying it.
type ReplayState int

const (
	// ReplayUnrecorded: no record; a replay is worked from scratch.
	ReplayUnrecorded ReplayState = iota
	// ReplayFailed: its failure is remembered; a replay must forget it first.
	ReplayFailed
	// ReplayProvisioned: the event has its result; there is nothing to replay.
	ReplayProvisioned
	// ReplayPending: a worker holds the event, or will take it (a replay
	// already sent it back).
	ReplayPending
)

// ReplayCheck is an event's record as a replay sees it.
type ReplayCheck struct {
	State    ReplayState
	Replays  int    // replays recorded so far
	ReplayOf uint64 // the dead letter (its sequence) last replayed
}

// ErrNotFailed means the record no longer holds a failure to forget: it
// changed since it was checked.
var ErrNotFailed = errors.New("deadletter: the event's record holds no failure to forget")

// Letters reads and replays the dead letters. Create it with Open; safe for
// concurrent use, though replays of one letter should not run at once.
type Letters struct {
	js      jetstream.JetStream
	stream  string
	prefix  string // the dead-letter subject, without the trailing "."
	kinds   map[string]messages.Kind
	records Records
}

// Open finds the dead-letter stream and the step records.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Letters, error) {
	if o.Records == nil {
		return nil, errors.New("deadletter: Options.Records is required")
	}
	if o.DeadLetterSubject == "" {
		o.DeadLetterSubject = "provisioner.dead_letter"
	}
	if len(o.Subjects) == 0 {
		o.Subjects = make(map[string]messages.Kind)
		for _, k := range messages.Kinds() {
			o.Subjects[string(k)] = k
		}
	}
	stream, err := js.StreamNameBySubject(ctx, o.DeadLetterSubject+".>")
	if err != nil {
		return nil, fmt.Errorf("deadletter: finding the stream of %s.>: %w (has a worker run here?)", o.DeadLetterSubject, err)
	}
	return &Letters{js: js, stream: stream, prefix: o.DeadLetterSubject, kinds: o.Subjects, records: o.Records}, nil
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
		SourceSubject: h.Get(messages.HeaderSourceSubject), Reason: h.Get(messages.HeaderReason), Message: h.Get(messages.HeaderError)}
	if out.SourceSubject == "" {
		out.SourceSubject = strings.TrimPrefix(raw.Subject, l.prefix+".")
	}
	out.Replays, _ = strconv.Atoi(h.Get(messages.HeaderReplays))
	if ev, err := messages.Decode(out.SourceSubject, l.kinds, raw.Data); err == nil {
		out.EventID = ev.ID
	} else if inv := (*messages.InvalidError)(nil); errors.As(err, &inv) {
		out.EventID = inv.ID
	}
	return out
}
