package projects

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Describe is a project's record in words, for provisioner inspect: its
// group, what the provisioner manages in it, the version applied, its
// close and when it will be forgotten (retention after the close).
func Describe(key string, revision uint64, r *Record, retention time.Duration, now time.Time) []string {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	add("project:     %s (record key %s, revision %d, schema %d)", r.RefID, key, revision, r.Schema)
	switch {
	case r.HasGroup():
		add("group:       %s group, chatid %s, open conversation id %s", or(r.Kind, "plain"), or(r.ChatID, "-"), or(r.OpenConversationID, "-"))
	case r.Creating():
		add("group:       being created by event %s (its step record says how far)", r.Creator)
	default:
		add("group:       none yet")
	}
	switch {
	case r.Adopted:
		add("origin:      adopted: an update named this existing group")
	case r.Migrated:
		add("origin:      made by a release before project records; this record was built from its step record")
	}
	if r.InviteURL != "" {
		add("join link:   %s", r.InviteURL)
	}
	if r.Name != "" || r.Owner != "" {
		add("name:        %q, owner %s", r.Name, or(r.Owner, "-"))
	}
	add("managed:     %d: %s (who the provisioner put in the group; only they are ever removed)", len(r.Managed), strings.Join(r.Managed, " "))
	if len(r.Listed) > 0 {
		add("listed:      %s (the members as the project last listed them)", strings.Join(r.Listed, " "))
	}
	if r.ProjectOwner != "" {
		add("hand owner:  %s set in DingTalk; the project's owner %s applies again only when an update changes it", r.Owner, r.ProjectOwner)
	}
	if r.ProjectName != "" {
		add("hand name:   %q set in DingTalk; the project's name %q applies again only when an update changes it", r.Name, r.ProjectName)
	}
	if len(r.Departed) > 0 {
		add("departed:    %s (left the group by hand: an update listing them unchanged does not put them back)", strings.Join(r.Departed, " "))
	}
	if len(r.Others) > 0 {
		add("others:      %s (added by hand: not managed)", strings.Join(r.Others, " "))
	}
	if r.Replaced != "" {
		add("replaces:    %s (disbanded in DingTalk; this project's group replaces it)", r.Replaced)
	}
	add("version:     %d (stream sequence %d)", r.Version, r.Seq)
	if r.UUID != "" {
		add("uuid:        %s (a scene group's de-duplication key)", r.UUID)
	}
	if r.Unsure {
		add("unsure:      a change may have landed unseen; the next change reads the group first")
	}
	if r.CreateUnanswered {
		add("unanswered:  %s; the creation that succeeds is flagged possible_duplicate (plain groups)", r.UnansweredWhy)
	}
	if r.Holder != "" && r.LeaseUntil.After(now) {
		add("held by:     %s for event %s, until %s", r.Holder, r.HolderEvent, r.LeaseUntil.UTC().Format(time.RFC3339))
	}
	if c := r.Closed; c != nil {
		by := "event " + c.By
		if c.Source != "" {
			by = fmt.Sprintf("%s in DingTalk (operator %s, DingTalk event %s)", c.Source, or(c.Operator, "unknown"), or(c.DingTalkEventID, "-"))
		}
		add("closed:      %s at %s by %s, as %q", c.Action, c.At.UTC().Format(time.RFC3339), by, c.Name)
		add("expires:     %s (RETENTION %v after the close)", r.ExpiresAt(retention).UTC().Format(time.RFC3339), retention)
	} else {
		add("closed:      no; the record is kept while the project is open")
	}
	if r.LastEvent != "" {
		add("last event:  %s, result on %s", r.LastEvent, r.LastSubject)
	}
	for _, a := range r.Answers {
		var src struct {
			Subject string `json:"source_subject"`
			ID      string `json:"source_id"`
		}
		_ = json.Unmarshal(a.Result, &src) // a result names its event; the key alone says it otherwise
		add("answered:    %s %q (key %s), result on %s at %s, kept here for its repeats",
			or(src.Subject, "-"), src.ID, a.Event, a.Subject, a.At.UTC().Format(time.RFC3339))
	}
	switch {
	case !r.Ledger:
		add("results:     in each event's step record (written by a release before results were kept here)")
	case r.StepsUntil.After(now):
		add("results:     some in their events' step records (failures, or past this record's room) until %s", r.StepsUntil.UTC().Format(time.RFC3339))
	}
	return lines
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
