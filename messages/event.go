// Package messages holds the worker's contract with other teams: the input
// events (a project's or an event's creation, updates and close), the
// results (group.provisioned, group.updated, group.closed, group.failed),
// how they are encoded, and how a body is validated. It depends on no other
// package of this module, so that a producer can import it alone.
package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Kind is what an input subject carries. The worker maps each configured
// subject to one kind.
type Kind string

// The input kinds.
const (
	ProjectCreated Kind = "project.created"
	ProjectUpdated Kind = "project.updated"
	ProjectClosed  Kind = "project.closed"
	EventScheduled Kind = "event.scheduled"
	EventUpdated   Kind = "event.updated"
	EventCancelled Kind = "event.cancelled"
)

// Kinds lists every input kind, in the contract's order.
func Kinds() []Kind {
	return []Kind{ProjectCreated, EventScheduled, ProjectUpdated, EventUpdated, ProjectClosed, EventCancelled}
}

// Op is what an event asks of its group.
type Op int

// The operations.
const (
	OpCreate Op = iota // project.created, event.scheduled
	OpUpdate           // project.updated, event.updated
	OpClose            // project.closed, event.cancelled
)

// Op says what events of kind k ask of their group.
func (k Kind) Op() Op {
	switch k {
	case ProjectUpdated, EventUpdated:
		return OpUpdate
	case ProjectClosed, EventCancelled:
		return OpClose
	}
	return OpCreate
}

// Events says whether k belongs to the event family (event.scheduled,
// event.updated, event.cancelled), whose groups are keyed by event_id and
// whose fields are title, organizer and attendees; the others key by
// project_id with name, owner and members.
func (k Kind) Events() bool {
	return k == EventScheduled || k == EventUpdated || k == EventCancelled
}

// Event is a validated input event, reduced to what the worker needs.
// It is a plain value, safe to share once decoded.
type Event struct {
	Subject string // the subject it arrived on
	Kind    Kind
	ID      string // the producer's unique event id
	RefID   string // project_id or event_id
	Name    string // the group name as sent, trimmed; cut with GroupName to the kind of group's limit
	Owner   string // owner / organizer
	// Members is the owner followed by members / attendees, deduplicated in
	// order: the group as it will be created.
	Members []string
	// Listed is members / attendees as sent, deduplicated, without the owner
	// added: an update keeps a former owner only if it lists them.
	Listed []string
	// Has says which optional fields an update carried: each present one is
	// the project's whole new value. A creation has them all.
	Has      Fields
	Version  int64     // the producer's version of the project; 0 when absent
	StartsAt time.Time // event.scheduled and event.updated, when sent
	Group    GroupSettings
	Metadata json.RawMessage // opaque, copied into the result; nil when absent
	// Adopt names an existing group an update brings under management (a
	// group made by hand, by another tool, or before RETENTION): chatid for
	// a plain group, open_conversation_id for a scene group. Empty otherwise.
	Adopt GroupRef
}

// GroupRef names a DingTalk group by either of its ids.
type GroupRef struct {
	ChatID             string
	OpenConversationID string
}

// Empty says whether the reference names no group.
func (g GroupRef) Empty() bool { return g.ChatID == "" && g.OpenConversationID == "" }

// Contract is the version of this contract's input kinds: 1 had the two
// creations; 2 added updates and closes. A worker records it on the durable
// consumer, so that an older one never narrows what a newer one consumes.
const Contract = 2

// Fields says which of an update's optional fields were present.
type Fields struct {
	Name, Owner, Members bool
}

// Complete says whether the event carries everything creating a group needs.
func (e *Event) Complete() bool { return e.Has.Name && e.Has.Owner && e.Has.Members }

// GroupSettings are the optional group settings of a creation (the group
// object of the contract): each nil flag is left to DingTalk's default.
// Flags are 0 or 1.
type GroupSettings struct {
	Icon                string
	ShowHistoryType     *int
	Searchable          *int
	ValidationType      *int
	MentionAllAuthority *int
	ManagementType      *int
	ChatBannedType      *int
}

// RefField is the result field that carries RefID: "project_id" or "event_id".
func (e *Event) RefField() string {
	if e.Kind.Events() {
		return "event_id"
	}
	return "project_id"
}

// Key identifies an event for idempotency: the same subject and id give the
// same key, and it is a valid NATS KV key and message id.
func Key(subject, id string) string {
	h := sha256.Sum256([]byte(subject + "\x00" + id))
	return hex.EncodeToString(h[:16])
}

// ProjectKey identifies the project (or scheduled event) an event is about:
// every kind of one family with the same RefID gives the same key, a valid
// NATS KV key.
func ProjectKey(e *Event) string {
	family := "project"
	if e.Kind.Events() {
		family = "event"
	}
	h := sha256.Sum256([]byte(family + "\x00" + e.RefID))
	return family + "." + hex.EncodeToString(h[:16])
}
