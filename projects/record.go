// Package projects keeps one record per project (or scheduled event) and
// decides what an update asks of its group: the group's ids and link, the
// members the provisioner put in it, its owner and name, the last version
// applied, whether it is closed, and a lease that lets one event at a time,
// on any worker, change it.
package projects

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"provisioner/messages"
)

// Kinds of group a record can hold.
const (
	KindPlain = "plain"
	KindScene = "scene"
)

// Schema is the highest record schema this release reads, for a later
// release to read old ones: 1 came with project records; 2 adds the scene
// group's uuid, the unanswered create and adoption; 3 marks a record whose
// creation is under way with its step inside (Step). A record with a higher
// schema is left alone (see NewerError).
//
// Records are written with schema 2 except while such a creation is under
// way: a release before 3 would look for that creation's step record, find
// none, and might create the group again, so it must leave the record to
// this one (as it does with a schema it does not know). Once the group is
// made the record is schema 2 again, which that release reads.
const Schema = 3

// schemaBase is the schema of every record but one with a creation under
// way inside it.
const schemaBase = 2

// schema is the schema r is written with.
func (r *Record) schema() int {
	if r.Step != nil && r.Creating() {
		return Schema
	}
	return schemaBase
}

// Record is a project's record. It lives as long as the project does: the
// bucket has no TTL.
type Record struct {
	Schema int    `json:"schema"`
	RefID  string `json:"ref_id"` // project_id or event_id
	Kind   string `json:"kind,omitempty"`

	ChatID             string `json:"chatid,omitempty"`
	OpenConversationID string `json:"open_conversation_id,omitempty"`
	InviteURL          string `json:"invite_url,omitempty"`

	Name    string   `json:"name,omitempty"`    // the group's name as last set (cut to its kind's limit)
	Owner   string   `json:"owner,omitempty"`   // the group's owner as last set
	Listed  []string `json:"listed,omitempty"`  // the members as the project last listed them
	Managed []string `json:"managed,omitempty"` // who the provisioner put in the group, the owner included

	// What people changed in DingTalk (see Follow). ProjectOwner and
	// ProjectName are the owner and name as the project last set them,
	// kept only while the group's differ (someone changed them by hand):
	// an update applies the project's only when it changes them. Departed
	// are members the project lists who left or were removed by hand: an
	// update that lists them again unchanged does not put them back.
	ProjectOwner string    `json:"project_owner,omitempty"`
	ProjectName  string    `json:"project_name,omitempty"`
	Departed     []string  `json:"departed,omitempty"`
	Others       []string  `json:"others,omitempty"`      // members people added by hand: not managed, known to be in the group
	OwnerSetAt   time.Time `json:"owner_set_at,omitzero"` // when the last owner change by hand was made
	NameSetAt    time.Time `json:"name_set_at,omitzero"`  // when the last rename by hand was made

	Version int64  `json:"version"`       // the version last applied
	Seq     uint64 `json:"seq,omitempty"` // the stream sequence of the event last applied

	// UUID is the scene group's de-duplication key, taken from the project
	// (its key) when the record is made: a creation repeated by a later
	// event gets DingTalk's same group. Empty in records of schema 1, whose
	// creations used the event's key.
	UUID string `json:"uuid,omitempty"`
	// CreateUnanswered: a create for this project may have reached DingTalk
	// unseen and its event failed; the creation that finally succeeds is a
	// possible duplicate (plain groups), and says why.
	CreateUnanswered bool   `json:"create_unanswered,omitempty"`
	UnansweredWhy    string `json:"create_unanswered_why,omitempty"`
	// Adopted is set when an update brought an existing group under
	// management (its chatid or open_conversation_id); Migrated when the
	// record was built from a step record of a release before project records.
	Adopted  bool `json:"adopted,omitempty"`
	Migrated bool `json:"migrated,omitempty"`
	// Replaced is the group (chatid or open conversation id) someone
	// disbanded by hand that this record's group replaces (ON_HAND_DISBAND=recreate).
	Replaced string `json:"replaced,omitempty"`

	// Creator is the event creating the group; until Created its step
	// record says how far the creation got. That step record is Step, in
	// this record, when the creation was the project's first event (one
	// record to write instead of two); otherwise it is the creator's own
	// record in the step bucket. Step is kept once the group is made: a
	// repeat of the creating event publishes its result from it.
	Creator string          `json:"creator,omitempty"`
	Created bool            `json:"created,omitempty"`
	Step    json.RawMessage `json:"step,omitempty"`
	// Unsure: a change may have landed unseen (its holder died, or DingTalk
	// answered without a code). The next change reads the group first.
	Unsure bool `json:"unsure,omitempty"`
	// Adding is who the change under way is adding, written before the
	// first call that adds: if its holder dies, whoever reads the group next
	// knows them for the provisioner's, not a person's.
	Adding []string `json:"adding,omitempty"`
	Closed *Closure `json:"closed,omitempty"`

	// LastEvent and LastResult are the last event applied and its result,
	// written with the change: a delivery of it that finds it here
	// publishes that result rather than working it again.
	LastEvent   string          `json:"last_event,omitempty"`
	LastSubject string          `json:"last_subject,omitempty"`
	LastResult  json.RawMessage `json:"last_result,omitempty"`
	// LastHand is the key of the last DingTalk event folded into the record
	// (see Follow): a delivery of it that finds it here publishes its
	// result without folding it again.
	LastHand string `json:"last_hand,omitempty"`
	// The ledger (see Keep): Answers are the results of the project's
	// recent events, for their repeats; Ledger says the record is kept with
	// it (a release before it drops both when it writes the record);
	// StepsUntil, that until then a result may be in a step record instead.
	Ledger     bool       `json:"ledger,omitempty"`
	Answers    []Answered `json:"answers,omitempty"`
	StepsUntil time.Time  `json:"steps_until,omitzero"`

	// The lease: one event at a time changes the group.
	Holder      string    `json:"holder,omitempty"`       // the delivery holding it
	HolderEvent string    `json:"holder_event,omitempty"` // its event's key
	LeaseUntil  time.Time `json:"lease_until,omitzero"`
}

// EventsKey says whether a project key (messages.ProjectKey) is a
// scheduled event's, whose results carry event_id, rather than a project's.
func EventsKey(key string) bool { return strings.HasPrefix(key, "event.") }

// NewerError means a record was written by a newer release (a higher
// schema): this one must not read or write it, and hands the event back for
// a newer worker.
type NewerError struct {
	Key    string
	Schema int
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("projects: the record %s has schema %d, newer than this release's %d: left for a newer worker", e.Key, e.Schema, Schema)
}

// ExpiresAt is when a closed project's record is forgotten: retention after
// its close. Zero for an open project, which is kept.
func (r *Record) ExpiresAt(retention time.Duration) time.Time {
	if r.Closed == nil {
		return time.Time{}
	}
	return r.Closed.At.Add(retention)
}

// Closure is how a project was closed: a second close repeats it.
type Closure struct {
	Action string    `json:"action"` // messages.ActionArchived, …Disbanded or …Kept
	Name   string    `json:"name"`
	At     time.Time `json:"at"`
	By     string    `json:"by"` // the closing event's key
	// Source is messages.SourceDingTalk when someone disbanded the group
	// in DingTalk (Operator did), empty for a project's close.
	Source   string `json:"source,omitempty"`
	Operator string `json:"operator,omitempty"`
	// DingTalkEventID is the disband event's id, for the result's.
	DingTalkEventID string `json:"dingtalk_event_id,omitempty"`
}

// empty says whether the record holds nothing worth keeping: no group, no
// creation under way or unanswered, no close, no group disbanded by hand
// awaiting its replacement.
func (r *Record) empty() bool {
	return !r.HasGroup() && !r.Creating() && r.Closed == nil && !r.CreateUnanswered && r.Replaced == "" && r.Step == nil
}

// HasGroup says whether the record knows its group.
func (r *Record) HasGroup() bool { return r.ChatID != "" || r.OpenConversationID != "" }

// Creating says whether a creation is under way: its event's step record
// knows how far it got, and nothing else may create or change the group.
func (r *Record) Creating() bool { return r.Creator != "" && !r.Created }

// Stale says whether an event of version v that arrived at stream sequence
// seq is older than what the group shows: with versions, one not greater
// than the last applied; without (both 0), one that arrived before the last
// applied.
func (r *Record) Stale(v int64, seq uint64) bool {
	if v != 0 || r.Version != 0 {
		return v <= r.Version
	}
	return seq <= r.Seq
}

// Want is what an event asks the group to be.
type Want struct {
	Name    string   // the group's name, cut to the kind's limit
	Owner   string   // the group's owner
	Listed  []string // the members as listed
	Members []string // who the provisioner keeps in the group: the project's owner and Listed, deduplicated, but Departed
	// The project's owner and name, and the departed members still left
	// out, as the record keeps them once the update is applied.
	ProjectOwner, ProjectName string
	Departed                  []string
}

// Wanted is the group an event asks for: each field it carries replaces the
// record's, the others stay. nameRunes is the kind's name limit.
//
// What people changed in DingTalk stands until the project changes it: a
// hand-set owner or name is replaced only by an update whose owner or name
// differs from the project's last; a member who left by hand is put back
// only by an update that newly lists them (absent from its last list).
func Wanted(r *Record, ev *messages.Event, nameRunes int) Want {
	w := Want{Name: r.Name, Owner: r.Owner, Listed: r.Listed, ProjectOwner: r.projectOwner(), ProjectName: r.projectName()}
	if ev.Has.Name {
		if n := messages.GroupName(ev.Name, nameRunes); n != w.ProjectName {
			w.Name, w.ProjectName = n, n
		}
	}
	if ev.Has.Owner && ev.Owner != w.ProjectOwner {
		w.Owner, w.ProjectOwner = ev.Owner, ev.Owner
	}
	if ev.Has.Members {
		w.Listed = ev.Listed
	}
	before := messages.GroupMembers(r.projectOwner(), r.Listed)
	for _, m := range messages.GroupMembers(w.ProjectOwner, w.Listed) {
		if slices.Contains(r.Departed, m) && slices.Contains(before, m) && m != w.Owner {
			w.Departed = append(w.Departed, m) // listed before and now: stays out
			continue
		}
		w.Members = append(w.Members, m)
	}
	return w
}

// projectOwner is the owner as the project last set it.
func (r *Record) projectOwner() string {
	if r.ProjectOwner != "" {
		return r.ProjectOwner
	}
	return r.Owner
}

// projectName is the name as the project last set it.
func (r *Record) projectName() string {
	if r.ProjectName != "" {
		return r.ProjectName
	}
	return r.Name
}
