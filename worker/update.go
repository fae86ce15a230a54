package worker

import (
	"context"
	"errors"
	"slices"

	"provisioner/dingtalk"
	"provisioner/messages"
	"provisioner/projects"
)

// errDissolved: the group was dissolved in DingTalk, not by this project's close.
var errDissolved = errors.New("worker: the group was dissolved in DingTalk")

// change brings an existing group in line with an update (or a creation of
// a project that has its group): the calls projects.Steps plans, each through
// the budget and retried like any other; none when nothing changes, and no
// read of the group unless a change may have landed unseen. An update older
// than what the group shows changes nothing and says so (stale).
func (w *Worker) change(ctx context.Context, stopping <-chan struct{}, j *job, rec projects.Record) error {
	ev, h, lim := j.ev, j.projectHold(), w.groups.Limits()
	if rec.Stale(ev.Version, j.seq) {
		return w.publishChanged(ctx, stopping, j, &rec, projects.Delta{Added: []string{}, Removed: []string{}}, true)
	}
	st := rec
	h.state = &st
	want := projects.Wanted(&st, ev, lim.NameRunes)
	grp := group(&st)
	read := func(ctx context.Context) error {
		gs, err := w.groups.Read(ctx, grp)
		if err != nil {
			return err
		}
		if gs.Dissolved {
			return errDissolved
		}
		st.Reconcile(gs, want)
		return nil
	}
	var delta *projects.Delta
	reread := false // a refusal is answered once by reading the group
	for {
		if st.Unsure {
			if err := w.call(ctx, stopping, j, "read the group", read); err != nil {
				return w.dissolved(err)
			}
		}
		d := projects.Diff(&st, want)
		if delta == nil {
			delta = &d // what the result reports: the change as first planned
		}
		steps := projects.Steps(d, lim, st.Managed)
		if len(steps) == 0 {
			break
		}
		if adds := adding(steps); len(adds) > 0 && !slices.Equal(adds, st.Adding) {
			st.WillAdd(adds)
			if err := h.lock.Update(ctx, func(r *projects.Record) { *r = st }); err != nil {
				return err
			}
		}
		step := steps[0]
		err := w.call(ctx, stopping, j, "update the group", func(ctx context.Context) error {
			if st.Unsure { // the last try's answer proved nothing: look before trying again
				if err := read(ctx); err != nil {
					return err
				}
				j.held().addAttempts(1)
				if steps = projects.Steps(projects.Diff(&st, want), lim, st.Managed); len(steps) == 0 {
					step = dingtalk.Change{}
					return nil
				}
				step = steps[0]
			}
			err := w.groups.Change(ctx, grp, &step)
			if err != nil && dingtalk.Classify(err) == dingtalk.OutcomeUnknown {
				st.Doubt()
			}
			return err
		})
		var f *failure
		if errors.As(err, &f) && f.reason == messages.ReasonDingTalkRejected && !reread {
			// Perhaps DingTalk refuses to add a present member or remove an
			// absent one (undocumented): read the group and do only what is missing.
			reread = true
			st.Doubt()
			j.log.Debug().Str("event_id", j.eventID).Err(err).Msg("DingTalk refused a change: reading the group before trying once more")
			continue
		}
		if err != nil {
			return w.dissolved(err)
		}
		st.Apply(&step)
	}
	st.Updated(want, ev.Version, j.seq)
	return w.publishChanged(ctx, stopping, j, &st, *delta, false)
}

// adding is every member the steps add.
func adding(steps []dingtalk.Change) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Add...)
	}
	return out
}

// dissolved turns a group found dissolved into the event's failure.
func (w *Worker) dissolved(err error) error {
	if errors.Is(err, errDissolved) {
		return &failure{reason: messages.ReasonGroupClosed, cause: err,
			message: "the group was dissolved in DingTalk: an update cannot change it"}
	}
	return err
}
