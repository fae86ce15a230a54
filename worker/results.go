package worker

import (
	"context"
	"errors"
	"strings"

	"provisioner/messages"
	"provisioner/projects"
)

// finish ends an event whose project now says what it did: the project's
// record is written and let go (with next applied, when set) with the
// result in its ledger, then the step record (when the event has one)
// keeps the result, then it is published. A worker that dies between the
// writes leaves a project record that has this event's result: the next
// delivery publishes it (see applyLocked).
func (w *Worker) finish(ctx context.Context, j *job, subject string, data []byte, next *projects.Record, also func(*record)) error {
	h, c := j.projectHold(), j.held()
	done := func(r *record) {
		r.Step, r.ResultSubject, r.Result, r.ProjectKept = stepDone, subject, data, true
		if also != nil {
			also(r)
		}
	}
	var step []byte // the step, done, when it is kept in the project's record: one write
	if c.in != nil {
		st := c.snapshot()
		done(&st)
		var err error
		if step, err = encodeRecord(st); err != nil {
			return err
		}
	}
	now, kept := w.cfg.Now(), true
	err := h.lock.Unlock(ctx, func(r *projects.Record) {
		if next != nil {
			*r = *next
		}
		r.Answer(j.key, subject, data)
		if step != nil {
			r.Step = step
			return
		}
		// In the ledger too: a repeat finds it there whatever came since.
		if kept = r.Keep(j.key, subject, data, now, w.cfg.Retention); !kept {
			r.StepRecorded(now, w.cfg.Retention)
		}
	})
	if errors.Is(err, projects.ErrLockLost) && (c.in != nil || c.mem != nil) {
		err = errClaimLost
	}
	if err != nil {
		return err
	}
	j.setHold(nil)
	switch {
	case c.in != nil:
		c.in.amend(done)
	case c.mem != nil:
		c.mem.amend(done)
		if !kept { // the ledger filled since the update began (changesOnly): its step record keeps the result
			if err := w.writeStep(ctx, j, c.mem.snapshot()); err != nil {
				return err
			}
		}
	default:
		if err := c.update(ctx, done); err != nil {
			return err
		}
	}
	return w.publish(ctx, subject, msgID(subject, j.key), data)
}

// publishProvisioned records the group in its project and the result in the
// step record, then publishes the result (see finish). A worker that dies
// between leaves records that say done: the next delivery publishes the same
// result, with the same message id, and calls DingTalk no more.
func (w *Worker) publishProvisioned(ctx context.Context, j *job, link string) error {
	ev, c := j.ev, j.held()
	rec, lim := c.snapshot(), w.groups.Limits()
	res := messages.Provisioned{
		ID: j.key, SourceSubject: ev.Subject, SourceID: ev.ID,
		ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID, InviteURL: link,
		Name: messages.GroupName(ev.Name, lim.NameRunes), Owner: ev.Owner, MemberCount: len(ev.Members), Attempts: rec.Attempts,
		Metadata: ev.Metadata, ProvisionedAt: w.cfg.Now().UTC(), PossibleDuplicate: rec.PossibleDuplicate,
	}
	res.SetRef(ev)
	data, err := encodeJSON(res)
	if err != nil {
		return err
	}
	next := j.projectHold().lock.Record()
	next.MarkCreated(projects.Creation{ChatID: rec.ChatID, OpenConversationID: rec.OpenConversationID, InviteURL: link,
		Name: res.Name, Owner: ev.Owner, Listed: ev.Listed, Managed: ev.Members})
	if w.recreates(ev) {
		// A new group for one disbanded by hand: the project's version and
		// sequence (in its events stream, not this one) stay as they were.
		res.Replaces = next.Replaced
		if data, err = encodeJSON(res); err != nil {
			return err
		}
	} else {
		next.Applied(ev.Version, j.seq)
	}
	if err := w.finish(ctx, j, w.cfg.ProvisionedSubject, data, &next, func(r *record) { r.InviteURL = link }); err != nil {
		return err
	}
	flag(j.log.Info().Str("event_id", ev.ID).Str("chatid", rec.ChatID).Int("members", len(ev.Members)).
		Int("attempts", rec.Attempts), &rec).Dur("took", w.cfg.Now().Sub(j.start)).Msg("group provisioned")
	return nil
}

// recreates says whether ev asks for a new group for one disbanded by hand.
func (w *Worker) recreates(ev *messages.Event) bool {
	return w.cfg.HandEvents && strings.HasPrefix(ev.Subject, w.cfg.HandSubject+".recreate.")
}

// publishChanged records and publishes an update's result: group.updated, or
// group.provisioned (with the group's link) for a creation of a project
// that already had its group.
func (w *Worker) publishChanged(ctx context.Context, stopping <-chan struct{}, j *job, st *projects.Record, d projects.Delta, stale bool) error {
	ev, attempts := j.ev, j.held().snapshot().Attempts
	if ev.Kind.Op() == messages.OpCreate {
		if st.InviteURL == "" {
			err := w.call(ctx, stopping, j, "fetch the join link", func(ctx context.Context) (err error) {
				link, err := w.groups.JoinLink(ctx, group(st), st.Owner)
				st.SetLink(link)
				return err
			})
			if err != nil {
				return err
			}
			attempts = j.held().snapshot().Attempts
		}
		res := messages.Provisioned{
			ID: j.key, SourceSubject: ev.Subject, SourceID: ev.ID,
			ChatID: st.ChatID, OpenConversationID: st.OpenConversationID, InviteURL: st.InviteURL,
			Name: st.Name, Owner: st.Owner, MemberCount: len(st.Managed), Attempts: attempts,
			Metadata: ev.Metadata, ProvisionedAt: w.cfg.Now().UTC(), Stale: stale,
		}
		res.SetRef(ev)
		return w.publishResult(ctx, j, w.cfg.ProvisionedSubject, res, st)
	}
	res := messages.Updated{
		ID: j.key, SourceSubject: ev.Subject, SourceID: ev.ID,
		ChatID: st.ChatID, OpenConversationID: st.OpenConversationID,
		Added: d.Added, Removed: d.Removed, Owner: d.Owner, Name: d.Name,
		MemberCount: len(st.Managed), Version: st.Version, Unchanged: !stale && d.Empty(), Stale: stale,
		Attempts: attempts, Metadata: ev.Metadata, UpdatedAt: w.cfg.Now().UTC(),
	}
	res.SetRef(ev)
	return w.publishResult(ctx, j, w.cfg.UpdatedSubject, res, st)
}

// publishResult encodes a result, then records and publishes it (see finish).
func (w *Worker) publishResult(ctx context.Context, j *job, subject string, res any, st *projects.Record) error {
	data, err := encodeJSON(res)
	if err != nil {
		return err
	}
	if err := w.finish(ctx, j, subject, data, st, nil); err != nil {
		return err
	}
	j.log.Info().Str("event_id", j.eventID).Str("result", subject).Str("chatid", st.ChatID).
		Int("attempts", j.held().snapshot().Attempts).Str("kind", string(j.ev.Kind)).Dur("took", w.cfg.Now().Sub(j.start)).Msg("result published")
	return nil
}

// publishClosed publishes a closed project's result: the close's action, name and
// time, whichever close event asks.
func (w *Worker) publishClosed(ctx context.Context, j *job, st projects.Record) error {
	ev := j.ev
	if st.Closed == nil {
		return errors.New("worker: publishClosed called on an open project")
	}
	res := messages.Closed{
		ID: j.key, SourceSubject: ev.Subject, SourceID: ev.ID,
		ChatID: st.ChatID, OpenConversationID: st.OpenConversationID,
		Action: st.Closed.Action, Name: st.Closed.Name, Version: st.Version,
		Attempts: j.held().snapshot().Attempts, Metadata: ev.Metadata, ClosedAt: st.Closed.At,
	}
	res.SetRef(ev)
	return w.publishResult(ctx, j, w.cfg.ClosedSubject, res, &st)
}
