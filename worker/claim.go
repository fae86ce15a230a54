package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// step is how far an event has got. Each is recorded before moving on.
type step string

const (
	stepClaimed      step = "claimed"       // a worker holds it; chat/create may be in flight
	stepCreated      step = "created"       // the group exists: chatid recorded
	stepMembersAdded step = "members_added" // every member beyond the first 40 added
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

// claim is one delivery's hold on an event's record. Every write is a
// compare-and-set on the revision it last saw, so a holder that lost the
// record can never overwrite the new holder's steps. Safe for concurrent use
// (the heartbeat renews the lease while steps run).
type claim struct {
	kv    jetstream.KeyValue
	key   string
	lease time.Duration
	now   func() time.Time

	mu   sync.Mutex
	rev  uint64 // guarded by mu
	rec  record // guarded by mu
	lost bool   // guarded by mu
}

// snapshot returns a copy of the record.
func (c *claim) snapshot() record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec
}

// update applies fn to the record, renews the lease and writes it.
func (c *claim) update(ctx context.Context, fn func(*record)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.rec
	fn(&next)
	next.LeaseUntil = c.now().Add(c.lease)
	return c.write(ctx, next)
}

// release hands the event back so the next delivery need not wait out the
// lease. With freshBudget, the event's retry budget starts again when it is
// next taken (the wait was a pause, not the event's own trouble).
func (c *claim) release(ctx context.Context, freshBudget bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.rec
	next.LeaseUntil, next.Released = time.Time{}, true
	if freshBudget {
		next.FirstAttemptAt = time.Time{}
	}
	return c.write(ctx, next)
}

// write stores next with a compare-and-set; c.mu must be held.
func (c *claim) write(ctx context.Context, next record) error {
	if c.lost {
		return errClaimLost
	}
	data, err := encodeJSON(next)
	if err != nil {
		return err
	}
	rev, err := c.kv.Update(ctx, c.key, data, c.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		c.lost = true
		return errClaimLost
	}
	if err != nil {
		// Keep what happened (a chatid, a batch added) so that a later
		// release still records it. If this write did land after all, the
		// revision moved and the release is refused, leaving the record right.
		c.rec = next
		return fmt.Errorf("worker: writing step %q: %w", next.Step, err)
	}
	c.rev, c.rec = rev, next
	return nil
}

// addAttempts counts DingTalk calls; they are written with the next step.
func (c *claim) addAttempts(n int) {
	c.mu.Lock()
	c.rec.Attempts += n
	c.mu.Unlock()
}

// claimResult is what acquire found.
type claimResult struct {
	claim    *claim        // set when this delivery now holds the event
	done     *record       // set when the event already has a result
	newer    int           // set when a newer release wrote the record: its schema
	heldFor  time.Duration // set when another live delivery holds it
	tookOver bool          // this delivery took over an unfinished record
}

// acquire takes hold of key for one delivery: creates the record (first
// writer wins), or takes over one whose holder's lease ran out.
func acquire(ctx context.Context, kv jetstream.KeyValue, key string, fresh record, lease time.Duration, now func() time.Time) (claimResult, error) {
	c := &claim{kv: kv, key: key, lease: lease, now: now}
	fresh.Schema, fresh.Step = recordSchema, stepClaimed
	fresh.LeaseUntil = now().Add(lease)
	data, err := encodeJSON(fresh)
	if err != nil {
		return claimResult{}, err
	}
	for range 3 {
		rev, err := kv.Create(ctx, key, data)
		if err == nil {
			c.rev, c.rec = rev, fresh
			return claimResult{claim: c}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return claimResult{}, fmt.Errorf("worker: creating step record: %w", err)
		}
		entry, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or deleted between the two calls: create again
		}
		if err != nil {
			return claimResult{}, fmt.Errorf("worker: reading step record: %w", err)
		}
		var old record
		if err := json.Unmarshal(entry.Value(), &old); err != nil {
			return claimResult{}, fmt.Errorf("worker: step record %s is unreadable: %w", key, err)
		}
		if old.Schema > recordSchema {
			return claimResult{newer: old.Schema}, nil // neither read further nor written: a newer worker's
		}
		if old.Step == stepDone {
			return claimResult{done: &old}, nil
		}
		if wait := old.LeaseUntil.Sub(now()); wait > 0 {
			return claimResult{heldFor: wait}, nil
		}
		// The holder is gone: take over where it stopped. If it died with a
		// create on the wire, that create may have taken effect.
		next := old
		next.Holder, next.StreamSeq = fresh.Holder, fresh.StreamSeq
		next.LeaseUntil = now().Add(lease)
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
		upd, err := encodeJSON(next)
		if err != nil {
			return claimResult{}, err
		}
		rev, err = kv.Update(ctx, key, upd, entry.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return claimResult{heldFor: lease}, nil // another delivery took over first
		}
		if err != nil {
			return claimResult{}, fmt.Errorf("worker: taking over step record: %w", err)
		}
		c.rev, c.rec = rev, next
		return claimResult{claim: c, tookOver: true}, nil
	}
	return claimResult{}, fmt.Errorf("worker: step record %s keeps vanishing", key)
}
