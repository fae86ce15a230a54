package worker

import (
	"context"
	"errors"
	"fmt"

	"provisioner/dingtalk"
	"provisioner/messages"
	"provisioner/projects"
)

// adopt brings an existing group under management for an update that
// names it (its chatid, or a scene group's open_conversation_id) and whose
// project has no group: it reads the group (one call for a plain group),
// records it with the members it holds that the update lists as managed
// (the others are left alone), then applies the update as any other.
func (w *Worker) adopt(ctx context.Context, stopping <-chan struct{}, j *job, rec projects.Record) error {
	ev, lim := j.ev, w.groups.Limits()
	g := dingtalk.Group{ChatID: ev.Adopt.ChatID, OpenConversationID: ev.Adopt.OpenConversationID}
	switch {
	case lim.Deduplicated && g.OpenConversationID == "":
		return &failure{reason: messages.ReasonInvalidEvent, message: fmt.Sprintf(
			"this worker makes scene groups: adopting one takes its open_conversation_id, and the %s carries only chatid %q", ev.Kind, g.ChatID)}
	case !lim.Deduplicated && g.ChatID == "":
		return &failure{reason: messages.ReasonInvalidEvent, message: fmt.Sprintf(
			"this worker makes plain groups: adopting one takes its chatid, and the %s carries only open_conversation_id %q", ev.Kind, g.OpenConversationID)}
	}
	err := w.proj.ReserveAdoption(ctx, messages.ProjectKey(ev), ev.RefID, g.ChatID, g.OpenConversationID)
	var taken *projects.TakenError
	if errors.As(err, &taken) {
		return &failure{reason: messages.ReasonInvalidEvent, cause: err, message: fmt.Sprintf(
			"the group %s is already recorded for %s %q: one group belongs to one project", taken.Group, familyField(taken.Project), taken.RefID)}
	}
	if err != nil {
		return err
	}
	var gs *dingtalk.GroupState
	err = w.call(ctx, stopping, j, "read the group to adopt", func(ctx context.Context) (err error) {
		gs, err = w.groups.Read(ctx, g)
		return err
	})
	if err != nil {
		return err
	}
	if gs.Dissolved {
		return &failure{reason: messages.ReasonGroupClosed, message: fmt.Sprintf("the group %s to adopt was dissolved in DingTalk", adoptID(ev.Adopt))}
	}
	st := rec
	st.Adopt(g, gs, ev, lim.NameRunes, w.kind())
	j.projectHold().state = &st
	j.log.Info().Str("event_id", j.eventID).Str("chatid", g.ChatID).Str("open_conversation_id", g.OpenConversationID).
		Int("members_found", len(gs.Members)).Int("managed", len(st.Managed)).Msg("adopting an existing group")
	return w.change(ctx, stopping, j, st)
}

// sameGroup says whether ref names the record's group.
func sameGroup(r *projects.Record, ref messages.GroupRef) bool {
	return (ref.ChatID != "" && ref.ChatID == r.ChatID) || (ref.OpenConversationID != "" && ref.OpenConversationID == r.OpenConversationID)
}

// adoptID is the id an adoption names, for messages.
func adoptID(ref messages.GroupRef) string {
	if ref.ChatID != "" {
		return "chatid " + ref.ChatID
	}
	return "open_conversation_id " + ref.OpenConversationID
}

// familyField names a project key's reference field.
func familyField(projectKey string) string {
	if len(projectKey) > 6 && projectKey[:6] == "event." {
		return "event_id"
	}
	return "project_id"
}
