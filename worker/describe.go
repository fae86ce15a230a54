package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/messages"
	"provisioner/projects"
)

// stepWords says what each step means to someone reading a record.
var stepWords = map[step]string{
	stepClaimed:      "taken; no group recorded yet (a create may be on its way)",
	stepCreated:      "group created; members beyond the first call's not all added yet",
	stepMembersAdded: "group created with every member; join link not fetched yet",
	stepLinked:       "group complete with its join link; result not published yet",
	stepDone:         "finished: its result is published",
}

// Describe reads the step record of the event subject/eventID and says what
// it holds, a line per fact, for provisioner inspect. It returns ErrNoRecord
// when none is kept.
func (r *Records) Describe(ctx context.Context, subject, eventID string) ([]string, error) {
	rec, rev, err := r.get(ctx, subject, eventID)
	if err != nil {
		return nil, err
	}
	return r.describeStep(rec, fmt.Sprintf("record key %s, revision %d, schema %d", messages.Key(subject, eventID), rev, rec.Schema)), nil
}

// describeStep says what a step holds, a line per fact; where says where
// it is kept.
func (r *Records) describeStep(rec record, where string) []string {
	now := r.now()
	at := func(t time.Time) string {
		return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
	}
	lines := []string{
		fmt.Sprintf("event:       %s %q (%s)", rec.Subject, rec.EventID, where),
		fmt.Sprintf("step:        %s: %s", rec.Step, stepWords[rec.Step]),
	}
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	if rec.Step == stepDone {
		outcome := r.outcomes[rec.ResultSubject]
		if outcome == "" {
			outcome = "done"
		}
		add("outcome:     %s (result on %s)", outcome, rec.ResultSubject)
	} else {
		switch {
		case rec.Released:
			add("holder:      none: handed back cleanly by %s; the next delivery resumes it", rec.Holder)
		case rec.LeaseUntil.IsZero():
			add("holder:      %s, under the project's lease (see holder above)", rec.Holder)
		case rec.LeaseUntil.After(now):
			add("holder:      %s, lease until %s", rec.Holder, rec.LeaseUntil.UTC().Format(time.RFC3339))
		default:
			add("holder:      %s stopped holding it %s; the next delivery takes over", rec.Holder, at(rec.LeaseUntil))
		}
	}
	add("stream seq:  %d (the delivery that wrote this record)", rec.StreamSeq)
	if !rec.FirstAttemptAt.IsZero() {
		add("first try:   %s; its retry budget runs from then", at(rec.FirstAttemptAt))
	}
	add("calls:       %d DingTalk calls made for it", rec.Attempts)
	if rec.ChatID != "" {
		add("group:       chatid %s, open conversation id %s", rec.ChatID, rec.OpenConversationID)
		add("members:     %d added in event order", rec.Added)
	}
	if rec.InviteURL != "" {
		add("join link:   %s", rec.InviteURL)
	}
	if rec.CreateInFlight {
		add("in flight:   a create was on the wire when this was written; if its holder died, the group may exist")
	}
	if rec.AddInFlight {
		add("in flight:   a batch of members was on the wire; whoever resumes reads the group first")
	}
	if rec.CreateUnanswered {
		add("unanswered:  %s", rec.UnansweredWhy)
	}
	if rec.PossibleDuplicate {
		add("duplicate?:  yes: the group may exist twice; check groups named as this one owned by the same owner")
	}
	if rec.Replays > 0 {
		add("replays:     %d (the last from dead letter %d)", rec.Replays, rec.ReplayOf)
	}
	if len(rec.Result) > 0 {
		add("result:      %s", rec.Result)
	}
	return lines
}

// DescribeProject prints a project's record (family "project" or "event",
// and its project_id or event_id) in words: its group, managed members,
// version, close and expiry. It fails with ErrNoRecord when there is none:
// no event of it was worked, or it was closed more than retention ago.
func (r *Records) DescribeProject(ctx context.Context, family, refID string, retention time.Duration) ([]string, error) {
	kind := messages.ProjectCreated
	if family == "event" {
		kind = messages.EventScheduled
	}
	key := messages.ProjectKey(&messages.Event{Kind: kind, RefID: refID})
	kv, err := r.js.KeyValue(ctx, r.projects)
	if err != nil {
		return nil, fmt.Errorf("worker: project records (bucket %q): %w", r.projects, err)
	}
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNoRecord
	}
	if err != nil {
		return nil, fmt.Errorf("worker: reading the record of %s %q: %w", family, refID, err)
	}
	var rec projects.Record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return nil, fmt.Errorf("worker: the record of %s %q is unreadable: %w", family, refID, err)
	}
	lines := projects.Describe(key, entry.Revision(), &rec, retention, r.now())
	if rec.Step != nil {
		// The creating event's step, kept here when it was the project's first event.
		var st record
		if err := json.Unmarshal(rec.Step, &st); err != nil {
			return nil, fmt.Errorf("worker: the step in the record of %s %q is unreadable: %w", family, refID, err)
		}
		lines = append(lines, "")
		lines = append(lines, r.describeStep(st, "its creation's step, kept in this record")...)
	}
	return lines, nil
}
