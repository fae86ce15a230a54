package projects

import (
	"slices"
	"strconv"
	"time"

	"provisioner/messages"
)

// Hand is a change someone made to a group in DingTalk itself, as an event
// DingTalk pushed or a reconcile's read of the group tells it.
type Hand struct {
	Change   string    // a messages.Change… constant, or HandDisband
	Members  []string  // who was added, removed or left
	Owner    string    // the new owner
	Name     string    // the new name
	At       time.Time // when it was made (the caller's clock when DingTalk does not say)
	Operator string    // who made it (a userid), when known
	Event    string    // the key of the event that told it
	EventID  string    // DingTalk's event id, when an event told it
}

// HandDisband is a Hand's Change when the group was disbanded.
const HandDisband = "disband"

// Follow folds a change made by hand into the record, by the rules the
// updates then keep (see Wanted), and reports whether it is news: false
// when the record already shows it (the echo of a change this provisioner
// made, should DingTalk raise events for API changes, which it does not
// document; or a repeat).
//
//   - members_removed, member_left: no longer in the group nor managed; a
//     member the project lists is Departed, not put back by an update that
//     lists them unchanged. A member leaving is always news.
//   - members_added: not managed, but known (Others); news unless the
//     record knew them in the group already.
//   - owner, name: the group's follows; the project's is kept for the
//     updates to compare with. A change made before the last one of its
//     kind (events can come out of order) changes nothing.
//   - disband: the record is closed (Source dingtalk, Operator).
func (r *Record) Follow(h Hand) bool {
	switch h.Change {
	case messages.ChangeMemberLeft, messages.ChangeMembersRemoved:
		wanted := messages.GroupMembers(r.projectOwner(), r.Listed)
		news := h.Change == messages.ChangeMemberLeft
		for _, m := range h.Members {
			if slices.Contains(r.Managed, m) || slices.Contains(r.Others, m) {
				news = true
				r.Managed = slices.DeleteFunc(r.Managed, func(x string) bool { return x == m })
				r.Others = slices.DeleteFunc(r.Others, func(x string) bool { return x == m })
			}
			if slices.Contains(wanted, m) && !slices.Contains(r.Departed, m) {
				news = true
				r.Departed = append(r.Departed, m)
			}
		}
		return news
	case messages.ChangeMembersAdded:
		news := false
		for _, m := range h.Members {
			if !slices.Contains(r.Managed, m) && !slices.Contains(r.Others, m) {
				news = true
				r.Others = append(r.Others, m)
			}
		}
		return news
	case messages.ChangeOwner:
		if h.Owner == r.Owner || h.At.Before(r.OwnerSetAt) {
			return false
		}
		project := r.projectOwner()
		r.Owner, r.OwnerSetAt, r.ProjectOwner = h.Owner, h.At, ""
		if project != h.Owner {
			r.ProjectOwner = project
		}
		return true
	case messages.ChangeName:
		if h.Name == r.Name || h.At.Before(r.NameSetAt) {
			return false
		}
		project := r.projectName()
		r.Name, r.NameSetAt, r.ProjectName = h.Name, h.At, ""
		if project != h.Name {
			r.ProjectName = project
		}
		return true
	case HandDisband:
		if r.Closed != nil {
			return false
		}
		r.Close(Closure{Action: messages.ActionDisbanded, Name: r.Name, At: h.At, By: h.Event,
			Source: messages.SourceDingTalk, Operator: h.Operator, DingTalkEventID: h.EventID}, 0, 0)
		return true
	}
	return false
}

// Replace answers a group disbanded by hand with a new one
// (ON_HAND_DISBAND=recreate): the record forgets the group (keeping its id
// in Replaced) and is made ready for a creation with the project's owner,
// name and members, a fresh start (those who had left the old group by
// hand are listed, so they are in the new one). A scene group's next
// uuid differs from the disbanded group's, which DingTalk would answer with
// again. It reports false when there is nothing to replace (the project is
// closed, or the group is already replaced).
func (r *Record) Replace(h Hand) bool {
	if r.Closed != nil || !r.HasGroup() {
		return false
	}
	r.Replaced = GroupID(r)
	r.Name, r.Owner = r.projectName(), r.projectOwner()
	r.ChatID, r.OpenConversationID, r.InviteURL = "", "", ""
	r.Creator, r.Created, r.Unsure = "", false, false
	r.Managed, r.Adding, r.Departed, r.Others = nil, nil, nil, nil
	r.ProjectName, r.ProjectOwner = "", ""
	r.OwnerSetAt, r.NameSetAt = time.Time{}, time.Time{}
	if r.UUID != "" {
		r.UUID += "-" + strconv.FormatInt(h.At.UnixMilli(), 36)
	}
	return true
}

// Current is what a new group for the project holds: the project's owner,
// name and members as last applied.
func (r *Record) Current() (name, owner string, listed []string) {
	return r.projectName(), r.projectOwner(), slices.Clone(r.Listed)
}
