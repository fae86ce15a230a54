package worker

import (
	"context"

	"provisioner/dingtalk"
	"provisioner/messages"
	"provisioner/projects"
)

// closeGroup closes a project's group as Config.OnClose says: archive (renamed
// with the prefix and muted, one call), disband (a scene group; a plain
// group cannot be and is archived), or keep (no call). The record is then
// closed: later updates fail group_closed, a later close repeats this one.
// A close is applied whatever its version: a project closes once.
func (w *Worker) closeGroup(ctx context.Context, stopping <-chan struct{}, j *job, rec projects.Record) error {
	ev, h, lim := j.ev, j.projectHold(), w.groups.Limits()
	st := rec
	h.state = &st
	action := w.cfg.OnClose
	if action == CloseDisband && !lim.Disbandable {
		action = CloseArchive
	}
	grp := group(&st)
	closure := projects.Closure{Name: st.Name, By: j.key}
	switch action {
	case CloseArchive:
		name := messages.GroupName(w.cfg.ClosedNamePrefix+st.Name, lim.NameRunes)
		change := dingtalk.Change{Name: name, Mute: true}
		// Renaming and muting again is harmless: a close that may have
		// landed unseen is simply sent again.
		if err := w.call(ctx, stopping, j, "archive the group", func(ctx context.Context) error {
			return w.groups.Change(ctx, grp, &change)
		}); err != nil {
			return err
		}
		st.Apply(&change)
		closure.Action, closure.Name = messages.ActionArchived, name
	case CloseDisband:
		err := w.call(ctx, stopping, j, "disband the group", func(ctx context.Context) error {
			if st.Unsure { // an earlier disband may have landed: DingTalk refuses a second
				gs, err := w.groups.Read(ctx, grp)
				if err != nil {
					return err
				}
				j.held().addAttempts(1)
				if st.Trust(); gs.Dissolved {
					return nil
				}
			}
			err := w.groups.Disband(ctx, grp)
			if err != nil && dingtalk.Classify(err) == dingtalk.OutcomeUnknown {
				st.Doubt()
			}
			return err
		})
		if err != nil {
			return err
		}
		closure.Action = messages.ActionDisbanded
	default:
		closure.Action = messages.ActionKept
	}
	closure.At = w.cfg.Now().UTC()
	st.Close(closure, ev.Version, j.seq)
	return w.publishClosed(ctx, j, st)
}
