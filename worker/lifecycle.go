package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"provisioner/dingtalk"
	"provisioner/internal/kvlease"
	"provisioner/messages"
	"provisioner/projects"
)

// hold is a job's hold on its project's record.
type hold struct {
	lock *projects.Lock
	// state is the record as this event's changes have left it so far
	// (nil: as locked); a release writes it, so that what landed is kept.
	state *projects.Record
}

// renew writes the project's record unchanged but for its lease.
func (h *hold) renew(ctx context.Context) error { return h.lock.Update(ctx, nil) }

func (h *hold) what() string { return "project record" }

func (j *job) setHold(h *hold) {
	j.mu.Lock()
	j.hold = h
	j.mu.Unlock()
}

func (j *job) projectHold() *hold {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.hold
}

// kind is the kind of group this worker makes.
func (w *Worker) kind() string {
	if w.groups.Limits().Deduplicated {
		return projects.KindScene
	}
	return projects.KindPlain
}

// apply works an event that holds its step record, under its project's
// lock: one event at a time changes a project's group, whichever worker
// holds it. It creates the group, changes it, or closes it, as the event
// and the project's record say.
func (w *Worker) apply(ctx context.Context, stopping <-chan struct{}, j *job) error {
	var fresh func(*projects.Record) // a creation expects a new project: its record is created blind
	if j.ev.Kind.Op() == messages.OpCreate {
		fresh = func(r *projects.Record) { r.BeginCreate(j.key, w.kind()) }
	}
	lock, err := w.lockProject(ctx, j, fresh)
	if err != nil {
		return w.lockRefused(err)
	}
	j.setHold(&hold{lock: lock})
	return w.applyLocked(ctx, stopping, j, lock)
}

// applyLocked is apply once the job holds its project.
func (w *Worker) applyLocked(ctx context.Context, stopping <-chan struct{}, j *job, lock *projects.Lock) error {
	ev := j.ev
	creator := func(r *projects.Record) { r.BeginCreate(j.key, w.kind()) }
	canCreate := ev.Kind.Op() == messages.OpCreate || (ev.Kind.Op() == messages.OpUpdate && ev.Complete())
	rec := lock.Record()
	subject, result, answered := rec.Result(j.key)
	switch {
	case answered:
		// Applied by a delivery that stopped before recording its result,
		// or (an update's, kept in the record's ledger) a repeat.
		if err := w.finish(ctx, j, subject, result, nil, nil); err != nil {
			return err
		}
		step := j.held().snapshot()
		flag(j.log.Info().Str("event_id", j.eventID).Str("result", subject).Str("chatid", rec.ChatID), &step).
			Msg("event already handled: result recorded by an earlier delivery published")
		return nil
	case rec.Creating() && rec.Creator != j.key:
		return &retryLater{delay: w.projectWait(time.Second), why: handBackHeld, reason: "the project's group is still being created by another event"}
	case rec.Creator == j.key && !rec.Created:
		return w.provision(ctx, stopping, j)
	case rec.HasGroup() && rec.Kind != "" && rec.Kind != w.kind():
		return &failure{reason: messages.ReasonInternal, message: fmt.Sprintf(
			"the project's group is a %s group but this worker makes %s groups: run a worker of the group's kind for it", rec.Kind, w.kind())}
	case rec.Closed != nil:
		if ev.Kind.Op() == messages.OpClose {
			return w.publishClosed(ctx, j, rec)
		}
		return &failure{reason: messages.ReasonGroupClosed, message: fmt.Sprintf(
			"%s %q was closed at %s (its group %s): an update after the close changes nothing",
			ev.RefField(), ev.RefID, rec.Closed.At.Format(time.RFC3339), rec.Closed.Action)}
	case !ev.Adopt.Empty() && !rec.HasGroup():
		return w.adopt(ctx, stopping, j, rec)
	case !ev.Adopt.Empty() && !sameGroup(&rec, ev.Adopt):
		return &failure{reason: messages.ReasonInvalidEvent, message: fmt.Sprintf(
			"%s %q already has its group (%s); this %s names another to adopt (%s): a project has one group",
			ev.RefField(), ev.RefID, projects.GroupID(&rec), ev.Kind, adoptID(ev.Adopt))}
	case !rec.HasGroup():
		if !canCreate {
			return &failure{reason: messages.ReasonNoGroup, message: fmt.Sprintf(
				"%s %q has no group, and this %s does not carry what creating one needs (name, owner and members)", ev.RefField(), ev.RefID, ev.Kind)}
		}
		if err := lock.Update(ctx, creator); err != nil {
			return err
		}
		return w.provision(ctx, stopping, j)
	case ev.Kind.Op() == messages.OpClose:
		return w.closeGroup(ctx, stopping, j, rec)
	}
	return w.change(ctx, stopping, j, rec)
}

// lockRefused is what a job does when its project could not be taken.
func (w *Worker) lockRefused(err error) error {
	var busy *projects.HeldError
	var newer *projects.NewerError
	var contended *kvlease.ContendedError
	switch {
	case errors.As(err, &busy):
		return &retryLater{delay: w.projectWait(busy.For), why: handBackHeld, reason: "another event of this project is being worked"}
	case errors.As(err, &contended):
		return &retryLater{delay: w.projectWait(time.Second), why: handBackHeld, reason: "other events of this project kept writing its record"}
	case errors.As(err, &newer):
		return leaveToNewer(newer.Error())
	}
	return err
}

// lockProject takes the event's project. An update or close of a project
// with no record may be of a group an older release (before project
// records) made since the last migration pass: a pass is run first (best
// effort), and the project looked up again, so that the group is found
// rather than answered no_group (or made twice).
func (w *Worker) lockProject(ctx context.Context, j *job, fresh func(*projects.Record)) (*projects.Lock, error) {
	ev, holder := j.ev, j.held().snapshot().Holder
	lock, err := w.proj.Lock(ctx, messages.ProjectKey(ev), ev.RefID, j.key, holder, projects.Take{Fresh: fresh, Plan: w.planAdds(j)})
	if err != nil || lock.Found() || ev.Kind.Op() == messages.OpCreate {
		return lock, err
	}
	seen := w.migrateGen.Load()
	if err := lock.Unlock(ctx, nil); err != nil { // the empty record it made is deleted
		return nil, err
	}
	if err := w.migratePass(ctx, &seen); err != nil {
		// Best effort: the upkeep's passes catch up; the event goes on as
		// for a project without a record rather than waiting on them.
		j.log.Warn().Err(err).Str("event_id", j.eventID).Msg("looking for a group an older release made for this project; going on without")
	}
	return w.proj.Lock(ctx, messages.ProjectKey(ev), ev.RefID, j.key, holder, projects.Take{})
}

// planAdds is an update's Take.Plan: who it is about to add, written with
// the lease (see change), so that the adds cost no write of their own. Only
// for the plain case change works from the record alone.
func (w *Worker) planAdds(j *job) func(*projects.Record) {
	ev := j.ev
	if ev.Kind.Op() != messages.OpUpdate || !ev.Adopt.Empty() {
		return nil
	}
	lim := w.groups.Limits()
	return func(r *projects.Record) {
		if _, _, done := r.Result(j.key); done || r.Closed != nil || !r.HasGroup() || r.Creating() || r.Unsure ||
			(r.Kind != "" && r.Kind != w.kind()) || r.Stale(ev.Version, j.seq) {
			return
		}
		if adds := adding(projects.Steps(projects.Diff(r, projects.Wanted(r, ev, lim.NameRunes)), lim, r.Managed)); len(adds) > 0 {
			r.WillAdd(adds)
		}
	}
}

// projectWait is how long an event waits for its project's lock: soon,
// since the holder is usually done in a moment, with jitter so that waiters
// do not come back together.
func (w *Worker) projectWait(left time.Duration) time.Duration {
	d := min(max(left, 100*time.Millisecond), time.Second)
	return d/2 + rand.N(d/2+1)
}

// releaseProject lets the project go when the event is handed back or
// fails, keeping what landed: an update's changes so far; for a failed
// creation, the group if one was made, so that nothing creates a second.
func (w *Worker) releaseProject(ctx context.Context, j *job, failed bool) error {
	h := j.projectHold()
	if h == nil {
		return nil
	}
	var rec record
	if c := j.held(); c != nil {
		rec = c.snapshot()
	}
	now := w.cfg.Now()
	err := h.lock.Unlock(ctx, func(r *projects.Record) {
		if h.state != nil {
			*r = *h.state
		}
		r.Release()
		if failed {
			r.StepRecorded(now, w.cfg.Retention) // the failure is in the event's step record
		}
		if failed && r.Creator == j.key && rec.ChatID != "" {
			// A failed creation's step is its own record now (detachStep).
			// One that made no group keeps it here: a repeat of its event
			// then finds the project's record, and its failure in the step
			// record, rather than creating the group as the project's first.
			r.Step = nil
		}
		if !failed || r.Creator != j.key || r.Created {
			return
		}
		if rec.ChatID == "" {
			var why string
			if rec.CreateUnanswered {
				why = rec.UnansweredWhy // a create went unanswered: the one that succeeds says so
			}
			r.AbandonCreate(why)
			return
		}
		ev, lim := j.ev, w.groups.Limits()
		added := min(rec.Added, len(ev.Members))
		c := projects.Creation{ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID,
			Name: messages.GroupName(ev.Name, lim.NameRunes), Owner: ev.Owner, Listed: ev.Listed,
			Managed: ev.Members[:added], Unsure: rec.AddInFlight}
		if c.Unsure {
			c.Adding = ev.Members[added:]
		}
		r.MarkCreated(c)
	})
	if errors.Is(err, projects.ErrLockLost) {
		err = nil
	}
	if err == nil {
		j.setHold(nil)
	}
	return err
}

// group names a record's group for the dingtalk client.
func group(r *projects.Record) dingtalk.Group {
	return dingtalk.Group{ChatID: r.ChatID, OpenConversationID: r.OpenConversationID}
}
