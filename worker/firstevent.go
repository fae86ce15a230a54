package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nuid"

	"provisioner/internal/kvlease"
	"provisioner/messages"
	"provisioner/projects"
)

// A creation that is its project's first event keeps its step inside the
// project's record (projects.Record.Step) rather than in a record of its
// own: one record to write instead of two. And that record is first written
// as the create leaves (after the budget let it go), with the create marked
// on the wire, so that claiming the event, taking the project and saying a
// create is on the wire are one round trip. A creation handed back before
// its create left writes the project's record then (Reserve), so that the
// project's updates wait for it.

// errProjectExists: the project has a record, so the creation is not its
// first event; nothing was sent.
var errProjectExists = errors.New("worker: the project already has a record")

// inRecord is a creation's step kept in its project's record. Safe for
// concurrent use.
type inRecord struct {
	// create writes the project's first record with rec as its step, and
	// takes the project; it fails with errProjectExists when one exists.
	create  func(ctx context.Context, rec record) (*projects.Lock, error)
	project projects.Record // the record create writes, as Fresh made it

	unwritten                // the step as last written, or about to be
	lock      *projects.Lock // guarded by mu; nil until the first write
}

// written is the project's lock once the record is written, nil before.
func (in *inRecord) written() *projects.Lock {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.lock
}

// update applies fn to the step and writes it into the project's record;
// the first write creates that record.
func (in *inRecord) update(ctx context.Context, fn func(*record)) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	next := in.rec
	fn(&next)
	if in.lock == nil {
		lock, err := in.create(ctx, next)
		if err != nil {
			return err
		}
		in.lock, in.rec = lock, next
		return nil
	}
	data, err := encodeRecord(next)
	if err != nil {
		return err
	}
	err = in.lock.Update(ctx, func(r *projects.Record) { r.Step = data })
	if errors.Is(err, projects.ErrLockLost) {
		return errClaimLost
	}
	in.rec = next // kept on any other failure too: what happened is not forgotten
	return err
}

// freshStep is the step record a delivery of j starts from.
func (w *Worker) freshStep(j *job) record {
	return record{Schema: recordSchema, Step: stepClaimed,
		Subject: j.ev.Subject, EventID: j.ev.ID, StreamSeq: j.seq, FirstAttemptAt: w.cfg.Now().UTC(),
		Holder: w.cfg.InstanceID + "/" + nuid.Next(), Replays: headerReplays(j.msg)}
}

// createFirst works a creation as its project's first event, or resumes
// one whose step is in its project's record. It returns false, having done
// nothing, when the event is to be worked with a step record of its own:
// the project has a record another event made.
func (w *Worker) createFirst(ctx context.Context, stopping <-chan struct{}, j *job) (bool, error) {
	ev := j.ev
	key := messages.ProjectKey(ev)
	fresh := w.freshStep(j)
	if j.delivered == 1 && fresh.Replays == 0 {
		pr := w.proj.Fresh(key, ev.RefID)
		pr.BeginCreate(j.key, w.kind())
		in := &inRecord{project: pr, unwritten: unwritten{rec: fresh}}
		in.create = func(ctx context.Context, rec record) (*projects.Lock, error) {
			p := pr
			var err error
			if p.Step, err = encodeRecord(rec); err != nil {
				return nil, err
			}
			lock, err := w.proj.Create(ctx, key, j.key, rec.Holder, p)
			if errors.Is(err, projects.ErrExists) {
				return nil, errProjectExists
			}
			if err == nil {
				j.setHold(&hold{lock: lock})
			}
			return lock, err
		}
		j.setClaim(&claim{in: in})
		err := w.provision(ctx, stopping, j)
		if !errors.Is(err, errProjectExists) {
			return true, err
		}
		w.budget.Unspend() // counted, but never sent
		j.setClaim(nil)
	}
	return w.resumeFirst(ctx, stopping, j, key, fresh)
}

// resumeFirst finds a creation's step in its project's record: publishes
// its result again when it is done, or takes the project and resumes the
// creation where it stopped.
func (w *Worker) resumeFirst(ctx context.Context, stopping <-chan struct{}, j *job, key string, fresh record) (bool, error) {
	pr, ok, err := w.proj.Get(ctx, key)
	var newer *projects.NewerError
	switch {
	case errors.As(err, &newer):
		return true, leaveToNewer(newer.Error())
	case err != nil:
		return true, err
	case !ok || pr.Creator != j.key || pr.Step == nil:
		return false, nil
	}
	old, err := decodeStep(key, pr.Step)
	switch {
	case err != nil:
		return true, err
	case old.Schema > recordSchema:
		return true, leaveToNewer(fmt.Sprintf("its step has schema %d, newer than this release's %d", old.Schema, recordSchema))
	case old.Step == stepDone:
		return true, w.republish(ctx, j, &old)
	}
	lock, err := w.proj.Lock(ctx, key, j.ev.RefID, j.key, fresh.Holder, projects.Take{})
	if err != nil {
		return true, w.lockRefused(err)
	}
	cur := lock.Record()
	if cur.Creator != j.key || cur.Step == nil {
		// Changed between the read and the lock: look again later.
		return true, errors.Join(lock.Unlock(ctx, nil), &retryLater{delay: w.projectWait(0), why: handBackHeld, reason: "the project's record changed while it was read"})
	}
	if old, err = decodeStep(key, cur.Step); err != nil {
		return true, errors.Join(err, lock.Unlock(ctx, nil))
	}
	held := takeOver(old, fresh, time.Time{})
	j.setHold(&hold{lock: lock})
	j.setClaim(&claim{in: &inRecord{project: cur, unwritten: unwritten{rec: held}, lock: lock}})
	if cur.LastEvent == j.key && cur.LastResult != nil {
		// Done, but the write that said so failed (and a hand-back wrote
		// what it had): the record has the result.
		if err := w.finish(ctx, j, cur.LastSubject, cur.LastResult, nil, nil); err != nil {
			return true, err
		}
		j.log.Info().Str("event_id", j.eventID).Str("result", cur.LastSubject).Str("chatid", cur.ChatID).
			Msg("event already handled: result recorded by an earlier delivery published")
		return true, nil
	}
	flag(j.log.Info().Str("event_id", j.eventID).Str("step", string(held.Step)).Str("chatid", held.ChatID), &held).
		Msg("resuming an event another delivery left unfinished")
	return true, w.provision(ctx, stopping, j)
}

// decodeStep reads the step inside a project's record.
func decodeStep(key string, data json.RawMessage) (record, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return record{}, fmt.Errorf("worker: the step in the project record %s is unreadable: %w", key, err)
	}
	return r, nil
}

// republish publishes an event's recorded result again, with the same
// message id: the event was handled before.
func (w *Worker) republish(ctx context.Context, j *job, done *record) error {
	j.repeated = true
	if err := w.publish(ctx, done.ResultSubject, w.resultID(done.ResultSubject, j.key, done.Replays), done.Result); err != nil {
		return err
	}
	flag(j.log.Info().Str("event_id", j.eventID).Str("result", done.ResultSubject).Str("chatid", done.ChatID), done).
		Msg("event already handled: result published again")
	return nil
}

// releaseInRecord hands back a creation whose step is in its project's
// record: the project is let go with the step marked released; one handed
// back before its create left reserves the project's record.
func (w *Worker) releaseInRecord(ctx context.Context, j *job, in *inRecord, freshBudget bool) error {
	st := released(in.snapshot(), freshBudget)
	data, err := encodeRecord(st)
	if err != nil {
		return err
	}
	lock := in.written()
	if lock == nil {
		pr := in.project
		pr.Step = data
		_, err := w.proj.Reserve(ctx, messages.ProjectKey(j.ev), pr)
		return err
	}
	err = lock.Unlock(ctx, func(r *projects.Record) {
		r.Release()
		r.Step = data
	})
	if errors.Is(err, projects.ErrLockLost) {
		err = nil
	}
	if err == nil {
		in.amend(func(r *record) { *r = st })
		j.setHold(nil)
	}
	return err
}

// detachStep moves a creation's step out of its project's record (or an
// update's out of memory) into a step record of its own, as a failure is
// recorded: the dead-letter tools (provisioner inspect, dlq replay) find a
// failed event there.
func (w *Worker) detachStep(ctx context.Context, j *job) error {
	c := j.held()
	if c == nil || (c.in == nil && c.mem == nil) {
		return nil
	}
	st := c.snapshot()
	st.LeaseUntil = w.cfg.Now().Add(w.cfg.AckWait)
	data, err := encodeRecord(st)
	if err != nil {
		return err
	}
	rev, err := w.topo.kv.Put(ctx, j.key, data)
	if err != nil {
		return fmt.Errorf("worker: writing the step record of %s: %w", j.key, err)
	}
	j.setClaim(&claim{l: kvlease.Hold(w.topo.kv, j.key, rev, st, encodeRecord), lease: w.cfg.AckWait, now: w.cfg.Now})
	return nil
}

// projectOf is the project's record as the job holds it, or as the
// creation that has not written it yet will.
func projectOf(j *job) projects.Record {
	if h := j.projectHold(); h != nil {
		return h.lock.Record()
	}
	if c := j.held(); c != nil && c.in != nil {
		return c.in.project
	}
	return projects.Record{}
}
