// Package messages holds the worker's contract with other teams: the input
// events (project.created, event.scheduled), the results (group.provisioned,
// group.failed), how they are encoded, and how a body is validated.
package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"provisioner/dingtalk"
)

// Kind is what an input subject carries. The worker maps each configured
// subject to one kind.
type Kind string

// The input kinds.
const (
	ProjectCreated Kind = "project.created"
	EventScheduled Kind = "event.scheduled"
)

// Event is a validated input event, reduced to what provisioning needs.
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
	Members  []string
	StartsAt time.Time // event.scheduled only
	Group    dingtalk.ChatSettings
	Metadata json.RawMessage // opaque, copied into the result; nil when absent
}

// RefField is the result field that carries RefID: "project_id" or "event_id".
func (e *Event) RefField() string {
	if e.Kind == EventScheduled {
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
