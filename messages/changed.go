package messages

import "time"

// What a group.changed result reports (its change field).
const (
	ChangeOwner          = "owner"
	ChangeName           = "name"
	ChangeMembersAdded   = "members_added"
	ChangeMembersRemoved = "members_removed"
	ChangeMemberLeft     = "member_left"
)

// Where a change was learnt (group.changed's source, group.closed's closed_by).
const (
	SourceDingTalk  = "dingtalk"  // an event DingTalk pushed
	SourceReconcile = "reconcile" // provisioner reconcile read the group
)

// Changed is the group.changed result: someone changed a managed group in
// DingTalk itself, and the project's record now follows it.
type Changed struct {
	ID                 string `json:"id"` // stable per change: a republish carries the same id
	Change             string `json:"change"`
	Source             string `json:"source"`
	ProjectID          string `json:"project_id,omitempty"`
	EventID            string `json:"event_id,omitempty"`
	ChatID             string `json:"chatid,omitempty"`
	OpenConversationID string `json:"open_conversation_id,omitempty"`
	DingTalkEventID    string `json:"dingtalk_event_id,omitempty"`
	// Operator is who made the change (a userid); an owner change's event
	// names only the operator's unionId, given as OperatorUnionID.
	Operator        string    `json:"operator,omitempty"`
	OperatorUnionID string    `json:"operator_union_id,omitempty"`
	Owner           string    `json:"owner,omitempty"`   // the new owner (change owner)
	Name            string    `json:"name,omitempty"`    // the new name (change name)
	Members         []string  `json:"members,omitempty"` // who was added, removed or left
	ChangedAt       time.Time `json:"changed_at"`
}

// SetRef sets project_id or event_id from a project's family and ref.
func (c *Changed) SetRef(events bool, refID string) {
	if events {
		c.EventID = refID
	} else {
		c.ProjectID = refID
	}
}
