package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/kvlease"
)

// step is how far an event has got. Each is recorded before moving on.
type step string

const (
	stepClaimed      step = "claimed"       // a worker holds it; chat/create may be in flight
	stepCreated      step = "created"       // the group exists: chatid recorded
	stepMembersAdded step = "members_added" // every member beyond the create's added
	stepLinked       step = "linked"        // the join link recorded
	stepDone         step = "done"          // a result (provisioned or failed) published
)

// recordSchema is written into every new record. Schema 2 records when a
// create or an add is on the wire; older records (0) did not, and a takeover
// of one falls back to the old rule (no chatid and not released cleanly:
// a create may have been sent).
const recordSchema = 2

// record is an event's step record in the KV bucket.
type record struct {
	Schema         int       `json:"schema,omitempty"`
	Step           step      `json:"step"`
	Subject        string    `json:"subject"`
	EventID        string    `json:"event_id"`
	Holder         string    `json:"holder"`      // the delivery working it: instance and a unique suffix
	LeaseUntil     time.Time `json:"lease_until"` // another delivery may take over after this
	StreamSeq      uint64    `json:"stream_seq"`
	FirstAttemptAt time.Time `json:"first_attempt_at"` // the retry budget runs from here
	Attempts       int       `json:"attempts"`         // DingTalk calls made, across deliveries

	ChatID             string `json:"chatid,omitempty"`
	OpenConversationID string `json:"open_conversation_id,omitempty"`
	Added              int    `json:"added,omitempty"` // members in the group so far, in event order
	InviteURL          string `json:"invite_url,omitempty"`
	PossibleDuplicate  bool   `json:"possible_duplicate,omitempty"`

	// CreateInFlight is written just before a create leaves this process
	// (after the rate limiter) and cleared when DingTalk refuses it with a
	// code: a holder that dies with it set may have created the group.
	CreateInFlight bool `json:"create_in_flight,omitempty"`
	// CreateUnanswered: a create may have taken effect unseen (answered by a
	// gateway page, cut off, timed out, or on the wire when its holder died).
	// A later successful create of a plain group is then a possible duplicate.
	CreateUnanswered bool `json:"create_unanswered,omitempty"`
	// UnansweredWhy says what left the first such create unanswered, for
	// whoever checks a possible duplicate.
	UnansweredWhy string `json:"create_unanswered_why,omitempty"`
	// AddInFlight is written just before a batch of members leaves, and kept
	// while its outcome is unknown: whoever resumes reads the group first.
	AddInFlight bool `json:"add_in_flight,omitempty"`
	// Released is set when a holder handed the event back cleanly.
	Released bool `json:"released,omitempty"`

	// ProjectKept: the project's record was written with this result, so
	// the migration from releases without project records skips it.
	ProjectKept bool `json:"project_kept,omitempty"`

	// Replays counts how often an operator replayed the event's dead letter
	// (provisioner dlq replay); ReplayOf is the last letter replayed, by its
	// sequence in the dead-letter stream.
	Replays  int    `json:"replays,omitempty"`
	ReplayOf uint64 `json:"replay_of,omitempty"`

	ResultSubject string          `json:"result_subject,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"` // the published result, republished verbatim
}

// unanswered records that a create may have taken effect unseen, and why,
// keeping the first reason.
func (r *record) unanswered(why string) {
	if !r.CreateUnanswered {
		r.CreateUnanswered, r.UnansweredWhy = true, why
	}
}

// errClaimLost means another delivery took the record over: stop, do nothing more.
var errClaimLost = errors.New("worker: step record taken over by another delivery")

// claim is one delivery's hold on an event's record: a lease whose every
// write renews the record's own LeaseUntil. The record is the event's own
// in the step bucket, the step inside its project's record (in), or a step
// not written anywhere yet (mem, see unwritten). Safe for concurrent use
// (the heartbeat renews it while steps run).
type claim struct {
	l     *kvlease.Lease[record] // nil when in or mem is set
	in    *inRecord
	mem   *unwritten
	lease time.Duration
	now   func() time.Time
}

// snapshot returns a copy of the record.
func (c *claim) snapshot() record {
	switch {
	case c.in != nil:
		return c.in.snapshot()
	case c.mem != nil:
		return c.mem.snapshot()
	}
	return c.l.Value()
}

// update applies fn to the record, renews the lease and writes it.
func (c *claim) update(ctx context.Context, fn func(*record)) error {
	switch {
	case c.in != nil:
		return c.in.update(ctx, fn)
	case c.mem != nil:
		c.mem.amend(fn)
		return nil
	}
	return claimErr(c.l.Update(ctx, func(r *record) {
		fn(r)
		r.LeaseUntil = c.now().Add(c.lease)
	}))
}

// renew writes the record unchanged but for its lease. A step inside the
// project's record, or in memory, lives by the project's lease, which the
// job renews.
func (c *claim) renew(ctx context.Context) error {
	if c.in != nil || c.mem != nil {
		return nil
	}
	return c.update(ctx, func(*record) {})
}

func (c *claim) what() string { return "step record" }

// release hands the event back so the next delivery need not wait out the
// lease. With freshBudget, the event's retry budget starts again when it is
// next taken (the wait was a pause, not the event's own trouble).
func (c *claim) release(ctx context.Context, freshBudget bool) error {
	if c.in != nil || c.mem != nil {
		return errors.New("worker: a step inside its project's record or in memory is released with the project (releaseInRecord, releaseUnwritten)")
	}
	return claimErr(c.l.Update(ctx, func(r *record) {
		r.LeaseUntil, r.Released = time.Time{}, true
		if freshBudget {
			r.FirstAttemptAt = time.Time{}
		}
	}))
}

// addAttempts counts DingTalk calls; they are written with the next step.
func (c *claim) addAttempts(n int) {
	switch {
	case c.in != nil:
		c.in.amend(func(r *record) { r.Attempts += n })
		return
	case c.mem != nil:
		c.mem.amend(func(r *record) { r.Attempts += n })
		return
	}
	c.l.Amend(func(r *record) { r.Attempts += n })
}

// claimErr names a lost lease for what it is here.
func claimErr(err error) error {
	if errors.Is(err, kvlease.ErrLost) {
		return errClaimLost
	}
	return err
}

func encodeRecord(r record) ([]byte, error) { return encodeJSON(r) }

// claimResult is what acquire found.
type claimResult struct {
	claim    *claim        // set when this delivery now holds the event
	done     *record       // set when the event already has a result
	heldFor  time.Duration // set when another live delivery holds it
	newer    int           // set when a newer release wrote the record: its schema
	tookOver bool          // this delivery took over an unfinished record
}

// acquire takes hold of key for one delivery: creates the record (first
// writer wins), or takes over one whose holder's lease ran out.
func acquire(ctx context.Context, kv jetstream.KeyValue, key string, fresh record, lease time.Duration, now func() time.Time) (claimResult, error) {
	fresh.Schema, fresh.Step = recordSchema, stepClaimed
	fresh.LeaseUntil = now().Add(lease)
	data, err := encodeJSON(fresh)
	if err != nil {
		return claimResult{}, err
	}
	var res claimResult
	held := fresh
	rev, err := kvlease.Swap(ctx, kv, key, 3, data, func(cur []byte) ([]byte, error) {
		res, held = claimResult{}, fresh
		if cur == nil {
			return data, nil // expired or deleted since: create again
		}
		var old record
		if err := json.Unmarshal(cur, &old); err != nil {
			return nil, fmt.Errorf("worker: step record %s is unreadable: %w", key, err)
		}
		switch {
		case old.Schema > recordSchema:
			res.newer = old.Schema // neither read further nor written: a newer worker's
			return nil, nil
		case old.Step == stepDone:
			res.done = &old
			return nil, nil
		}
		if wait := old.LeaseUntil.Sub(now()); wait > 0 {
			res.heldFor = wait
			return nil, nil
		}
		held, res.tookOver = takeOver(old, fresh, now().Add(lease)), true
		return encodeJSON(held)
	})
	if err != nil || rev == 0 {
		return res, err
	}
	res.claim = &claim{l: kvlease.Hold(kv, key, rev, held, encodeRecord), lease: lease, now: now}
	return res, nil
}

// takeOver is the record of a holder that is gone, as this delivery
// (fresh) resumes it where it stopped. If it died with a create on the
// wire, that create may have taken effect.
func takeOver(old, fresh record, until time.Time) record {
	next := old
	next.Holder, next.StreamSeq, next.LeaseUntil = fresh.Holder, fresh.StreamSeq, until
	switch {
	case next.ChatID != "":
	case old.CreateInFlight:
		next.unanswered("the worker holding the event stopped while a create was on the wire")
	case old.Schema < recordSchema && !old.Released:
		next.unanswered("the worker holding the event stopped before recording a create it may have sent (a record from an older version)")
	}
	next.CreateInFlight, next.Released = false, false
	if next.FirstAttemptAt.IsZero() {
		next.FirstAttemptAt = fresh.FirstAttemptAt
	}
	return next
}
