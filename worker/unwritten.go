package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
	"provisioner/projects"
)

// An update worked in its first delivery needs no step record: the
// project's lock already makes it the one event changing the group, the
// change's own state (who it is adding, whether a change may have landed
// unseen) is in the project's record, and its result goes to the record's
// ledger (projects.Record.Keep), where a repeat finds it. Its step is kept
// in memory (unwritten) and written to the step bucket only when the
// delivery does not end with a result: handed back (its calls and retry
// budget kept for the next delivery) or failed (the dead-letter tools find
// a failure there). Two writes fewer than a step record created and then
// given its result.
//
// An update whose project cannot take it that way writes its step record
// at once, as any other event does (materialize): a project without its
// group (the update may create it, and a create on the wire must be on
// record before it leaves), one being created or closed, an adoption, a
// ledger without room, or a step record of the event already there.

// unwritten is a step kept in memory (an inRecord keeps its own copy of
// the step it writes in one too). Safe for concurrent use.
type unwritten struct {
	mu  sync.Mutex
	rec record // guarded by mu
}

func (u *unwritten) snapshot() record {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rec
}

func (u *unwritten) amend(fn func(*record)) {
	u.mu.Lock()
	fn(&u.rec)
	u.mu.Unlock()
}

// unwrittenUpdate works an update's first delivery with its step in
// memory. It returns false, having done nothing, when the event is to be
// worked as any other (a replayed or redelivered one).
func (w *Worker) unwrittenUpdate(ctx context.Context, stopping <-chan struct{}, j *job) (bool, error) {
	if j.ev.Kind.Op() != messages.OpUpdate || j.delivered != 1 || headerReplays(j.msg) != 0 {
		return false, nil
	}
	fresh := w.freshStep(j)
	j.setClaim(&claim{mem: &unwritten{rec: fresh}})
	lock, err := w.lockProject(ctx, j, nil)
	if err != nil {
		j.setClaim(nil)
		return true, w.lockRefused(err)
	}
	j.setHold(&hold{lock: lock})
	rec := lock.Record()
	if _, _, answered := rec.Result(j.key); !answered { // else applyLocked publishes it again
		inMemory, err := w.changesOnly(ctx, j, &rec)
		if err != nil {
			return true, err
		}
		if !inMemory {
			if done, err := w.materialize(ctx, j, fresh); done || err != nil {
				return true, err
			}
		}
	}
	return true, w.applyLocked(ctx, stopping, j, lock)
}

// changesOnly says whether the update can be worked with its step in
// memory: it can only change the project's group, the ledger has room for
// its result, and no step record of it holds one.
func (w *Worker) changesOnly(ctx context.Context, j *job, rec *projects.Record) (bool, error) {
	now := w.cfg.Now()
	if !rec.HasGroup() || rec.Creating() || rec.Closed != nil || !j.ev.Adopt.Empty() ||
		(rec.Kind != "" && rec.Kind != w.kind()) || !rec.Keeps(now, w.cfg.Retention) {
		return false, nil
	}
	if !rec.Steps(now) {
		return true, nil
	}
	_, err := w.topo.kv.Get(ctx, j.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("worker: reading the step record of %s: %w", j.key, err)
	}
	return false, nil
}

// materialize writes the update's step record while the job holds its
// project, as acquire does for any event. done says the delivery ended
// here: the record said the event was done (its result is published
// again), or another delivery holds it, or a newer release wrote it (the
// project is let go and the error hands the event back).
func (w *Worker) materialize(ctx context.Context, j *job, fresh record) (done bool, err error) {
	res, err := acquire(ctx, w.topo.kv, j.key, fresh, w.cfg.AckWait, w.cfg.Now)
	if err != nil {
		return true, err
	}
	if res.claim != nil {
		w.takeClaim(j, res)
		return false, nil
	}
	j.setClaim(nil)
	if err := w.releaseProject(ctx, j, false); err != nil {
		return true, err
	}
	switch {
	case res.done != nil:
		return true, w.republish(ctx, j, res.done)
	case res.heldFor > 0:
		return true, &retryLater{delay: res.heldFor, why: handBackHeld, reason: "another delivery is working this event"}
	}
	return true, leaveToNewer(fmt.Sprintf("its step record has schema %d, newer than this release's %d", res.newer, recordSchema))
}

// releaseUnwritten hands back an update whose step is in memory: the
// project is let go with what its change left, then the step is written
// (released) for the next delivery, unless one is there already.
func (w *Worker) releaseUnwritten(ctx context.Context, j *job, u *unwritten, freshBudget bool) error {
	if j.projectHold() == nil {
		return nil // nothing taken, nothing spent
	}
	if err := w.releaseProject(ctx, j, false); err != nil {
		return err
	}
	data, err := encodeRecord(released(u.snapshot(), freshBudget))
	if err != nil {
		return err
	}
	if _, err := w.topo.kv.Create(ctx, j.key, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("worker: writing the step record of %s: %w", j.key, err)
	}
	return nil
}

// writeStep writes st as the job's step record, whatever is there.
func (w *Worker) writeStep(ctx context.Context, j *job, st record) error {
	data, err := encodeRecord(st)
	if err != nil {
		return err
	}
	if _, err := w.topo.kv.Put(ctx, j.key, data); err != nil {
		return fmt.Errorf("worker: writing the step record of %s: %w", j.key, err)
	}
	return nil
}

// released is a step as a delivery hands it back cleanly: no lease; with
// freshBudget, its retry budget starts again when it is next taken.
func released(st record, freshBudget bool) record {
	st.LeaseUntil, st.Released = time.Time{}, true
	if freshBudget {
		st.FirstAttemptAt = time.Time{}
	}
	return st
}
