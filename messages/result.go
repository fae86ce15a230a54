package messages

import (
	"encoding/json"
	"time"
)

// Provisioned is the group.provisioned result: the group exists and can be joined.
type Provisioned struct {
	ID                 string          `json:"id"` // stable per source event: a republish carries the same id
	SourceSubject      string          `json:"source_subject"`
	SourceID           string          `json:"source_id"`
	ProjectID          string          `json:"project_id,omitempty"`
	EventID            string          `json:"event_id,omitempty"`
	ChatID             string          `json:"chatid"`
	OpenConversationID string          `json:"open_conversation_id"`
	InviteURL          string          `json:"invite_url"`
	Name               string          `json:"name"`
	Owner              string          `json:"owner"`
	MemberCount        int             `json:"member_count"`
	Attempts           int             `json:"attempts"` // DingTalk calls made for this event, retries included
	Metadata           json.RawMessage `json:"metadata,omitempty"`
	ProvisionedAt      time.Time       `json:"provisioned_at"`
	// PossibleDuplicate is true when a create that may have reached DingTalk
	// unanswered (a gateway page, a timeout, a crash with it on the wire) was
	// sent again: a second group may exist. Never set for scene groups,
	// which DingTalk de-duplicates.
	PossibleDuplicate bool `json:"possible_duplicate,omitempty"`
	// Replaces is the group (chatid or open conversation id) someone
	// disbanded in DingTalk that this one replaces (ON_HAND_DISBAND=recreate).
	Replaces string `json:"replaces,omitempty"`
	// Stale is true when a creation found its project's group already
	// showing a later version (an update that carried everything created
	// it): nothing was changed, and the result carries the group as it stands.
	Stale bool `json:"stale,omitempty"`
}

// Updated is the group.updated result: the group now shows the update (or
// already did).
type Updated struct {
	ID                 string          `json:"id"`
	SourceSubject      string          `json:"source_subject"`
	SourceID           string          `json:"source_id"`
	ProjectID          string          `json:"project_id,omitempty"`
	EventID            string          `json:"event_id,omitempty"`
	ChatID             string          `json:"chatid"`
	OpenConversationID string          `json:"open_conversation_id"`
	Added              []string        `json:"added"`   // members put in the group by this update
	Removed            []string        `json:"removed"` // members the provisioner had put in and took out
	Owner              *Change         `json:"owner,omitempty"`
	Name               *Change         `json:"name,omitempty"`
	MemberCount        int             `json:"member_count"` // the members the provisioner manages, owner included
	Version            int64           `json:"version"`      // the version the group shows now
	Unchanged          bool            `json:"unchanged,omitempty"`
	Stale              bool            `json:"stale,omitempty"`
	Attempts           int             `json:"attempts"`
	Metadata           json.RawMessage `json:"metadata,omitempty"`
	UpdatedAt          time.Time       `json:"updated_at"`
}

// Change is a value an update changed.
type Change struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Close actions, as group.closed reports them.
const (
	ActionArchived  = "archived"  // renamed with the closed prefix and muted
	ActionDisbanded = "disbanded" // a scene group, dissolved
	ActionKept      = "kept"      // left as it was: only the provisioner's record is closed
)

// Closed is the group.closed result: the project closed and its group was
// archived, disbanded or kept. A second close repeats the first's action,
// name and time.
type Closed struct {
	ID                 string          `json:"id"`
	SourceSubject      string          `json:"source_subject"`
	SourceID           string          `json:"source_id"`
	ProjectID          string          `json:"project_id,omitempty"`
	EventID            string          `json:"event_id,omitempty"`
	ChatID             string          `json:"chatid"`
	OpenConversationID string          `json:"open_conversation_id"`
	Action             string          `json:"action"` // one of the Action constants
	Name               string          `json:"name"`   // the group's name after the close
	Version            int64           `json:"version"`
	Attempts           int             `json:"attempts"`
	Metadata           json.RawMessage `json:"metadata,omitempty"`
	ClosedAt           time.Time       `json:"closed_at"`
	// ClosedBy is "dingtalk" when someone disbanded the group in DingTalk
	// (the project's record is then closed; Operator says who), empty when
	// the project's close event closed it.
	ClosedBy        string `json:"closed_by,omitempty"`
	Operator        string `json:"operator,omitempty"`
	DingTalkEventID string `json:"dingtalk_event_id,omitempty"`
}

// Failed is the group.failed result: the event will never be provisioned as sent.
type Failed struct {
	ID            string          `json:"id"`
	SourceSubject string          `json:"source_subject"`
	SourceID      string          `json:"source_id,omitempty"` // empty when the body had no readable id
	ProjectID     string          `json:"project_id,omitempty"`
	EventID       string          `json:"event_id,omitempty"`
	Error         Failure         `json:"error"`
	Attempts      int             `json:"attempts"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	FailedAt      time.Time       `json:"failed_at"`
	// ChatID is set when the group was created before the failure (members or
	// the link could not be completed), so nobody creates it again by hand.
	ChatID string `json:"chatid,omitempty"`
}

// Failure says why an event failed. When DingTalk refused, its answer is
// carried as it came: errcode from the old family, code from v1.0.
type Failure struct {
	Reason            string `json:"reason"`                        // a stable machine word: one of the Reason constants
	Message           string `json:"message"`                       // a sentence a person understands
	DingTalkErrcode   *int   `json:"dingtalk_errcode,omitempty"`    // the old family's errcode
	DingTalkCode      string `json:"dingtalk_code,omitempty"`       // v1.0's code, e.g. "member.notFound"
	DingTalkRequestID string `json:"dingtalk_request_id,omitempty"` // DingTalk's request id, for a support ticket
}

// refs returns the project_id and event_id of an event's results: one is empty.
func refs(e *Event) (projectID, eventID string) {
	if e.Kind.Events() {
		return "", e.RefID
	}
	return e.RefID, ""
}

// SetRef sets project_id or event_id from an event's kind.
func (p *Provisioned) SetRef(e *Event) { p.ProjectID, p.EventID = refs(e) }

// SetRef sets project_id or event_id from an event's kind.
func (f *Failed) SetRef(e *Event) { f.ProjectID, f.EventID = refs(e) }

// SetRef sets project_id or event_id from an event's kind.
func (u *Updated) SetRef(e *Event) { u.ProjectID, u.EventID = refs(e) }

// SetRef sets project_id or event_id from an event's kind.
func (c *Closed) SetRef(e *Event) { c.ProjectID, c.EventID = refs(e) }
