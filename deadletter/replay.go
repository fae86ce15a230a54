package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
)

// Action is what a replay did with one letter.
type Action string

const (
	Replayed    Action = "replayed"    // failure forgotten, event published again, letter removed
	Refused     Action = "refused"     // replayed MaxReplays times already; Force replays it anyway
	Provisioned Action = "provisioned" // the event has its result after all (a group, a change, a close): letter removed, nothing published
	Pending     Action = "pending"     // a worker holds the event now: left alone, try later
	Superseded  Action = "superseded"  // this letter was replayed and failed again: a newer letter stands; removed
)

// ReplayOptions says how to replay.
type ReplayOptions struct {
	DryRun bool // say what would be done, change nothing
	Force  bool // replay letters replayed MaxReplays times already
	// Progress is called after each letter (i of n, from 1) with what was
	// done, or would be with DryRun.
	Progress func(i, n int, l Letter, a Outcome)
}

// Outcome is one letter's replay.
type Outcome struct {
	Action Action
	Replay int    // which replay of the event this was (Replayed only)
	Detail string // why, in words
}

// Replay replays each letter in turn. For each it checks the event's step
// record, forgets its failure, publishes the original (payload and headers,
// with Provisioner-Replays and a Nats-Msg-Id of its own) to the subject it
// came from, and removes the letter. Every step can be repeated, so a replay
// interrupted anywhere is finished by running it again: a letter still
// present is looked at afresh, and an event published twice is worked once.
// It stops at the first error that is not about one letter's state.
func (l *Letters) Replay(ctx context.Context, letters []Letter, o ReplayOptions) (map[Action]int, error) {
	counts := map[Action]int{}
	for i, letter := range letters {
		out, err := l.replayOne(ctx, letter, o)
		if err != nil {
			return counts, fmt.Errorf("deadletter: letter %d (%s %q): %w", letter.Seq, letter.SourceSubject, letter.EventID, err)
		}
		counts[out.Action]++
		if o.Progress != nil {
			o.Progress(i+1, len(letters), letter, out)
		}
	}
	return counts, nil
}

func (l *Letters) replayOne(ctx context.Context, letter Letter, o ReplayOptions) (Outcome, error) {
	chk := ReplayCheck{State: ReplayUnrecorded}
	if letter.EventID != "" {
		var err error
		if chk, err = l.records.CheckReplay(ctx, letter.SourceSubject, letter.EventID); err != nil {
			return Outcome{}, err
		}
	}
	done := max(letter.Replays, chk.Replays)
	if chk.ReplayOf == letter.Seq && chk.Replays > 0 {
		// This letter was replayed before, by a run that stopped before removing it.
		switch chk.State {
		case ReplayPending:
			return l.finish(ctx, letter, o, Outcome{Action: Replayed, Replay: chk.Replays,
				Detail: "finishing an interrupted replay: published again (a worker works it once)"}, true)
		case ReplayFailed:
			return l.finish(ctx, letter, o, Outcome{Action: Superseded, Detail: "its replay failed again: see the newer letter"}, false)
		}
	}
	switch chk.State {
	case ReplayProvisioned:
		return l.finish(ctx, letter, o, Outcome{Action: Provisioned, Detail: "the event has its result; nothing to replay"}, false)
	case ReplayPending:
		return Outcome{Action: Pending, Detail: "a worker holds this event now; replay it once it has a result"}, nil
	}
	if done >= MaxReplays && !o.Force {
		return Outcome{Action: Refused, Detail: fmt.Sprintf("replayed %d times already and failed each time; fix the cause, then replay with -force", done)}, nil
	}
	next := done + 1
	out := Outcome{Action: Replayed, Replay: next, Detail: fmt.Sprintf("replay %d of %d", next, MaxReplays)}
	if o.Force && next > MaxReplays {
		out.Detail = fmt.Sprintf("replay %d (forced)", next)
	}
	if o.DryRun {
		return out, nil
	}
	if chk.State == ReplayFailed {
		err := l.records.ForgetFailure(ctx, letter.SourceSubject, letter.EventID, letter.Seq, next)
		if errors.Is(err, ErrNotFailed) {
			return Outcome{Action: Pending, Detail: "the event's record changed while replaying; look again"}, nil
		}
		if err != nil {
			return Outcome{}, err
		}
	}
	return l.finish(ctx, letter, o, out, true)
}

// finish publishes the event again (when publish is set) and removes the letter.
func (l *Letters) finish(ctx context.Context, letter Letter, o ReplayOptions, out Outcome, publish bool) (Outcome, error) {
	if o.DryRun {
		return out, nil
	}
	if publish {
		msg := nats.NewMsg(letter.SourceSubject)
		for k, vs := range letter.Msg.Header {
			switch {
			case messages.ControlHeader(k), k == messages.HeaderReason, k == messages.HeaderError, k == messages.HeaderSourceSubject, k == messages.HeaderSourceSequence:
				continue
			}
			msg.Header[k] = append([]string(nil), vs...)
		}
		msg.Header.Set(messages.HeaderReplays, strconv.Itoa(out.Replay))
		msg.Data = letter.Msg.Data
		// A letter without an event id (an invalid event) has no step record:
		// only this id keeps a repeated replay from publishing it twice, and
		// only within the events stream's duplicate window.
		id := "replay-dead-letter-" + strconv.FormatUint(letter.Seq, 10)
		if letter.EventID != "" {
			id = "replay-" + messages.Key(letter.SourceSubject, letter.EventID) + "-" + strconv.Itoa(out.Replay)
		}
		if _, err := l.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
			return Outcome{}, fmt.Errorf("publishing to %s: %w", letter.SourceSubject, err)
		}
	}
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return Outcome{}, err
	}
	// A run interrupted after removing it left nothing to remove (DeleteMsg
	// of a missing message fails without a code that says so).
	if _, err := s.GetMsg(ctx, letter.Seq); errors.Is(err, jetstream.ErrMsgNotFound) {
		return out, nil
	}
	if err := s.DeleteMsg(ctx, letter.Seq); err != nil {
		return Outcome{}, fmt.Errorf("removing the letter: %w", err)
	}
	return out, nil
}
