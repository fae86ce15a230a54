package projects

import (
	"encoding/json"
	"slices"
)

// The changes a worker makes to a project's record, one method each, so
// that what a record may become is said here and nowhere else.

// BeginCreate marks the record as having its group created by event, a
// group of kind: until MarkCreated, that event's step record says how far
// it got, and nothing else may create or change the group.
func (r *Record) BeginCreate(event, kind string) {
	r.Creator, r.Kind, r.Unsure, r.Step = event, kind, false, nil
}

// Creation is what a creation left: the group, and who is in it.
type Creation struct {
	ChatID             string
	OpenConversationID string
	InviteURL          string // "" keeps the record's
	Name, Owner        string
	Listed             []string // the members as the project listed them
	Managed            []string // who the provisioner put in the group
	// Adding are the members a batch on the wire was adding when the
	// creation stopped; Unsure then says the group must be read first.
	Adding []string
	Unsure bool
}

// MarkCreated records the group a creation made (all of it, or as far as
// it got): the record now knows its group, and a mark that an earlier
// create may have landed unseen is spent.
func (r *Record) MarkCreated(c Creation) {
	r.Created, r.ChatID, r.OpenConversationID = true, c.ChatID, c.OpenConversationID
	if c.InviteURL != "" {
		r.InviteURL = c.InviteURL
	}
	r.Name, r.Owner = c.Name, c.Owner
	r.Listed, r.Managed, r.Adding = slices.Clone(c.Listed), slices.Clone(c.Managed), slices.Clone(c.Adding)
	r.Unsure, r.CreateUnanswered, r.UnansweredWhy = c.Unsure, false, ""
}

// AbandonCreate lets go of a creation that made nothing, so that the next
// event that can create does. unansweredWhy, when set, says a create may
// have landed unseen: the creation that finally succeeds is then flagged.
func (r *Record) AbandonCreate(unansweredWhy string) {
	r.Creator = ""
	if unansweredWhy != "" && !r.CreateUnanswered {
		r.CreateUnanswered, r.UnansweredWhy = true, unansweredWhy
	}
}

// Applied records the version (and stream sequence) of the event whose
// change the group now shows.
func (r *Record) Applied(version int64, seq uint64) { r.Version, r.Seq = version, seq }

// Updated records that the group shows the update that wanted w: its
// members as listed, and its version.
func (r *Record) Updated(w Want, version int64, seq uint64) {
	r.Listed, r.Adding, r.Departed = slices.Clone(w.Listed), nil, slices.Clone(w.Departed)
	r.ProjectOwner, r.ProjectName = "", ""
	if w.ProjectOwner != r.Owner {
		r.ProjectOwner = w.ProjectOwner
	}
	if w.ProjectName != r.Name {
		r.ProjectName = w.ProjectName
	}
	r.Applied(version, seq)
}

// WillAdd records who the change about to be sent adds: if its holder
// dies, whoever reads the group next knows them for the provisioner's.
func (r *Record) WillAdd(members []string) { r.Adding = slices.Clone(members) }

// Doubt says a change may have landed unseen: the next change reads the group first.
func (r *Record) Doubt() { r.Unsure = true }

// Trust says the record is known to show the group again.
func (r *Record) Trust() { r.Unsure = false }

// Release is the record as a holder lets it go: the adds that landed are in
// Managed, so the list of those under way is dropped, unless an add may
// have landed unseen (then the next reader needs it).
func (r *Record) Release() {
	if !r.Unsure {
		r.Adding = nil
	}
}

// SetLink records the group's join link.
func (r *Record) SetLink(url string) { r.InviteURL = url }

// Answer records the event last applied and its result, with the change:
// a delivery of it that finds them here publishes that result rather than
// working it again.
func (r *Record) Answer(event, subject string, result []byte) {
	if _, _, ok := r.Result(event); ok {
		return // a repeat: the record has it already
	}
	r.LastEvent, r.LastSubject, r.LastResult = event, subject, result
}

// Close records the project's close: later updates fail group_closed, a
// later close repeats it. Its version is the greater of the record's and
// the close's.
func (r *Record) Close(c Closure, version int64, seq uint64) {
	r.Closed, r.Unsure = &c, false
	r.Version, r.Seq = max(r.Version, version), max(r.Seq, seq)
}

// Migrated is the record of a group a release before project records made,
// built from its creation's step record: creator is that event's key, and
// its result (lastSubject, lastResult) is what a redelivery publishes.
func Migrated(refID, kind, creator string, c Creation, version int64, seq uint64, lastSubject string, lastResult json.RawMessage) Record {
	r := Record{Schema: schemaBase, RefID: refID, Kind: kind, Creator: creator, Migrated: true}
	r.MarkCreated(c)
	r.Applied(version, seq)
	r.Answer(creator, lastSubject, lastResult)
	return r
}
