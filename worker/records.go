package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/deadletter"
	"provisioner/messages"
)

// Records gives operators' tools (provisioner inspect, provisioner dlq
// replay, as deadletter.Records) the workers' step records: read one in words, or forget a
// remembered failure so that the event can be worked again. Create it with
// OpenRecords; safe for concurrent use.
type Records struct {
	js       jetstream.JetStream
	projects string // the project records' bucket, opened when asked
	kv       jetstream.KeyValue
	failed   string // the failure subject: a record whose result went there is a failure
	// outcomes names the other result subjects' outcomes, for inspect.
	outcomes map[string]string
	now      func() time.Time
}

// OpenRecords opens the step-record bucket the workers configured by cfg use
// (Bucket, FailedSubject). The bucket must exist: a worker creates it.
func OpenRecords(ctx context.Context, js jetstream.JetStream, cfg Config) (*Records, error) {
	cfg = cfg.withDefaults()
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("worker: step records (bucket %q): %w", cfg.Bucket, err)
	}
	outcomes := map[string]string{cfg.ProvisionedSubject: "provisioned", cfg.UpdatedSubject: "updated", cfg.ClosedSubject: "closed", cfg.FailedSubject: "failed"}
	return &Records{js: js, projects: cfg.ProjectBucket, kv: kv, failed: cfg.FailedSubject, outcomes: outcomes, now: cfg.Now}, nil
}

// ErrNoRecord means no step record is kept for an event: no worker took it
// yet, it could not be read (an invalid event), or RETENTION forgot it.
var ErrNoRecord = errors.New("worker: no step record for this event")

func (r *Records) get(ctx context.Context, subject, eventID string) (record, uint64, error) {
	entry, err := r.kv.Get(ctx, messages.Key(subject, eventID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return record{}, 0, ErrNoRecord
	}
	if err != nil {
		return record{}, 0, fmt.Errorf("worker: reading the step record of %s %q: %w", subject, eventID, err)
	}
	var rec record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return record{}, 0, fmt.Errorf("worker: the step record of %s %q is unreadable: %w", subject, eventID, err)
	}
	return rec, entry.Revision(), nil
}

// CheckReplay reads what the record of the event subject/eventID says about
// replaying it. It changes nothing.
func (r *Records) CheckReplay(ctx context.Context, subject, eventID string) (deadletter.ReplayCheck, error) {
	rec, _, err := r.get(ctx, subject, eventID)
	if errors.Is(err, ErrNoRecord) {
		return deadletter.ReplayCheck{State: deadletter.ReplayUnrecorded}, nil
	}
	if err != nil {
		return deadletter.ReplayCheck{}, err
	}
	return deadletter.ReplayCheck{State: r.state(rec), Replays: rec.Replays, ReplayOf: rec.ReplayOf}, nil
}

func (r *Records) state(rec record) deadletter.ReplayState {
	switch {
	case rec.Step != stepDone:
		return deadletter.ReplayPending
	case rec.ResultSubject == r.failed:
		return deadletter.ReplayFailed
	default:
		return deadletter.ReplayProvisioned
	}
}

// ForgetFailure rewrites a failed event's record so that the next delivery
// works it again, as the replay of dead letter letterSeq, the replays-th: it
// keeps what DingTalk already did (a created group, the members added, the
// join link, and whether a create went unanswered), so a replay resumes
// rather than creating a second group, and its retry budget starts afresh.
// It fails with ErrNotFailed if the record holds no failure (a compare-and-set
// on the revision read guards against a worker writing meanwhile).
func (r *Records) ForgetFailure(ctx context.Context, subject, eventID string, letterSeq uint64, replays int) error {
	rec, rev, err := r.get(ctx, subject, eventID)
	if err != nil {
		return err
	}
	if r.state(rec) != deadletter.ReplayFailed {
		return deadletter.ErrNotFailed
	}
	rec.Step = stepClaimed
	switch {
	case rec.InviteURL != "":
		rec.Step = stepLinked
	case rec.ChatID != "":
		rec.Step = stepCreated
	}
	rec.ResultSubject, rec.Result = "", nil
	rec.LeaseUntil, rec.Released, rec.FirstAttemptAt = time.Time{}, true, time.Time{}
	rec.CreateInFlight = false // a failure is only recorded once the create's fate is settled
	rec.Replays, rec.ReplayOf = replays, letterSeq
	data, err := encodeJSON(rec)
	if err != nil {
		return err
	}
	if _, err := r.kv.Update(ctx, messages.Key(subject, eventID), data, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return deadletter.ErrNotFailed
		}
		return fmt.Errorf("worker: forgetting the failure of %s %q: %w", subject, eventID, err)
	}
	return nil
}
