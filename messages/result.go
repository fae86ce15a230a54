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

// SetRef sets project_id or event_id from an event's kind.
func (p *Provisioned) SetRef(e *Event) {
	if e.Kind == EventScheduled {
		p.EventID = e.RefID
	} else {
		p.ProjectID = e.RefID
	}
}

// SetRef sets project_id or event_id from an event's kind.
func (f *Failed) SetRef(e *Event) {
	if e.Kind == EventScheduled {
		f.EventID = e.RefID
	} else {
		f.ProjectID = e.RefID
	}
}
