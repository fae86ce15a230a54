package dingtalk

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The group events DingTalk pushes to the app that owns a group (Stream
// mode's EVENT frames, eventType header).
const (
	EventAddMember    = "chat_add_member"
	EventRemoveMember = "chat_remove_member"
	EventQuit         = "chat_quit"
	EventUpdateOwner  = "chat_update_owner"
	EventUpdateTitle  = "chat_update_title"
	EventDisband      = "chat_disband"
)

// GroupEventTypes are the event types GroupEvent reads.
func GroupEventTypes() []string {
	return []string{EventAddMember, EventRemoveMember, EventQuit, EventUpdateOwner, EventUpdateTitle, EventDisband}
}

// GroupEvent is one group event's data. Every one carries the open
// conversation id and the operator's unionId; chat_update_owner carries
// neither chatId nor operator (the operator's userid).
type GroupEvent struct {
	Type               string    `json:"-"`
	ChatID             string    `json:"chatId"`
	OpenConversationID string    `json:"openConversationId"`
	CorpID             string    `json:"corpId"`
	Operator           string    `json:"operator"`
	OperatorUnionID    string    `json:"operatorUnionId"`
	UserIDs            []string  `json:"userId"`
	UnionIDs           []string  `json:"unionId"`
	Title              string    `json:"title"`
	Owner              string    `json:"owner"`
	At                 time.Time `json:"-"` // timeStamp
}

// ParseGroupEvent reads the data of a group event of type typ. It fails,
// saying what is missing, when the event names no group, or lacks what its
// type must carry.
func ParseGroupEvent(typ string, data []byte) (*GroupEvent, error) {
	var ev GroupEvent
	var raw struct {
		TimeStamp json.RawMessage `json:"timeStamp"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("dingtalk: the %s event is not readable JSON: %w", typ, err)
	}
	_ = json.Unmarshal(data, &raw)
	ev.Type, ev.At = typ, millis(raw.TimeStamp)
	if ev.ChatID == "" && ev.OpenConversationID == "" {
		return nil, fmt.Errorf("dingtalk: the %s event names no group (chatId and openConversationId are empty)", typ)
	}
	switch typ {
	case EventAddMember, EventRemoveMember, EventQuit:
		if len(ev.UserIDs) == 0 {
			return nil, fmt.Errorf("dingtalk: the %s event names no member (userId is empty)", typ)
		}
	case EventUpdateOwner:
		if ev.Owner == "" {
			return nil, fmt.Errorf("dingtalk: the %s event names no owner", typ)
		}
	case EventUpdateTitle:
		if ev.Title == "" {
			return nil, fmt.Errorf("dingtalk: the %s event carries no title", typ)
		}
	case EventDisband:
	default:
		return nil, fmt.Errorf("dingtalk: %q is not a group event", typ)
	}
	return &ev, nil
}

// millis reads a timestamp in milliseconds, given as a number or a string.
func millis(raw json.RawMessage) time.Time {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
