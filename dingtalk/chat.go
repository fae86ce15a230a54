package dingtalk

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"unicode/utf8"
)

// Limits DingTalk puts on group chats.
const (
	MaxNameRunes      = 20   // a group name is 1 to 20 characters
	MaxUsersPerCall   = 40   // useridlist / add_useridlist per call
	MaxMembersInGroup = 1000 // members in one group
)

// ChatSettings are a group's optional flags. A nil field is left to
// DingTalk's default (0 for all of them).
type ChatSettings struct {
	ShowHistoryType     *int   `json:"showHistoryType,omitempty"`     // 1: new members see the last 100 messages
	Searchable          *int   `json:"searchable,omitempty"`          // 1: the group can be found by search
	ValidationType      *int   `json:"validationType,omitempty"`      // 1: joining needs approval
	MentionAllAuthority *int   `json:"mentionAllAuthority,omitempty"` // 1: only the owner may @all
	ManagementType      *int   `json:"managementType,omitempty"`      // 1: only the owner manages the group
	ChatBannedType      *int   `json:"chatBannedType,omitempty"`      // 1: everyone muted
	Icon                string `json:"icon,omitempty"`                // media id of the group's picture
}

// CreateChatRequest is the body of chat/create.
type CreateChatRequest struct {
	Name    string   `json:"name"`       // 1 to 20 characters
	Owner   string   `json:"owner"`      // must be in UserIDs
	UserIDs []string `json:"useridlist"` // at most 40; add the rest with UpdateChat
	ChatSettings
}

// CreatedChat is what chat/create answers.
type CreatedChat struct {
	ChatID             string `json:"chatid"`
	OpenConversationID string `json:"openConversationId"` // DingTalk's long-term identifier
	ConversationTag    int    `json:"conversationTag"`
}

// CreateChat creates a group chat. DingTalk has no idempotency key for this
// call: when the error's Class is OutcomeUnknown the group may exist anyway.
func (c *Client) CreateChat(ctx context.Context, req *CreateChatRequest) (*CreatedChat, error) {
	const api = "chat/create"
	if err := checkName(api, req.Name); err != nil {
		return nil, err
	}
	if err := checkUsers(api, "useridlist", req.UserIDs, 1); err != nil {
		return nil, err
	}
	if !slices.Contains(req.UserIDs, req.Owner) {
		return nil, invalid(api, "owner %q must be in useridlist", req.Owner)
	}
	var r struct {
		reply
		CreatedChat
	}
	if err := c.do(ctx, call{api: api, method: http.MethodPost, body: req, mutating: true}, &r); err != nil {
		return nil, err
	}
	if r.ChatID == "" {
		return nil, &Error{API: api, HTTPStatus: http.StatusOK, Class: OutcomeUnknown, ErrMsg: "reply has no chatid", RequestID: r.RequestID}
	}
	return &r.CreatedChat, nil
}

// UpdateChatRequest is the body of chat/update. Empty fields are left as they are.
type UpdateChatRequest struct {
	ChatID     string   `json:"chatid"`
	Name       string   `json:"name,omitempty"`
	Owner      string   `json:"owner,omitempty"`
	AddUserIDs []string `json:"add_useridlist,omitempty"` // at most 40 per call
	DelUserIDs []string `json:"del_useridlist,omitempty"`
	ChatSettings
}

// UpdateChat changes a group: its name, owner, members or settings. Adding a
// member who is already in the group changes nothing, so a repeated call is safe.
func (c *Client) UpdateChat(ctx context.Context, req *UpdateChatRequest) error {
	const api = "chat/update"
	if req.ChatID == "" {
		return invalid(api, "chatid is empty")
	}
	if req.Name != "" {
		if err := checkName(api, req.Name); err != nil {
			return err
		}
	}
	if err := checkUsers(api, "add_useridlist", req.AddUserIDs, 0); err != nil {
		return err
	}
	var r reply
	return c.do(ctx, call{api: api, method: http.MethodPost, body: req}, &r)
}

// ChatInfo is a group as chat/get describes it.
type ChatInfo struct {
	Name                string   `json:"name"`
	Owner               string   `json:"owner"`
	UserIDs             []string `json:"useridlist"`
	ConversationTag     int      `json:"conversationTag"`
	ChatBannedType      int      `json:"chatBannedType"`
	Searchable          int      `json:"searchable"`
	ValidationType      int      `json:"validationType"`
	MentionAllAuthority int      `json:"mentionAllAuthority"`
	ManagementType      int      `json:"managementType"`
	ShowHistoryType     int      `json:"showHistoryType"`
	Icon                string   `json:"icon"`
	Status              int      `json:"status"` // 1 normal, 2 dismissed
}

// GetChat reads a group's settings and members.
func (c *Client) GetChat(ctx context.Context, chatID string) (*ChatInfo, error) {
	const api = "chat/get"
	if chatID == "" {
		return nil, invalid(api, "chatid is empty")
	}
	var r struct {
		reply
		ChatInfo ChatInfo `json:"chat_info"`
	}
	if err := c.do(ctx, call{api: api, method: http.MethodGet, query: url.Values{"chatid": {chatID}}}, &r); err != nil {
		return nil, err
	}
	return &r.ChatInfo, nil
}

// QRCodeLink returns the link that joins the group, shared by userID, who
// must be a member.
func (c *Client) QRCodeLink(ctx context.Context, chatID, userID string) (string, error) {
	const api = "topapi/chat/qrcode/get"
	if chatID == "" || userID == "" {
		return "", invalid(api, "chatid and userid are both required")
	}
	body := struct {
		ChatID string `json:"chatid"`
		UserID string `json:"userid"`
	}{chatID, userID}
	var r struct {
		reply
		Result string `json:"result"`
	}
	if err := c.do(ctx, call{api: api, method: http.MethodPost, body: body}, &r); err != nil {
		return "", err
	}
	if r.Result == "" {
		return "", &Error{API: api, HTTPStatus: http.StatusOK, Class: Transient, ErrMsg: "reply has no result link", RequestID: r.RequestID}
	}
	return r.Result, nil
}

// invalid is a request the client refuses to send because DingTalk would
// refuse it: a call saved from the app's quota.
func invalid(api, format string, args ...any) *Error {
	return &Error{API: api, Class: Permanent, ErrMsg: "invalid request: " + fmt.Sprintf(format, args...)}
}

func checkName(api, name string) error {
	if n := utf8.RuneCountInString(name); n < 1 || n > MaxNameRunes || !utf8.ValidString(name) {
		return invalid(api, "name must be 1 to %d characters of valid UTF-8, got %d", MaxNameRunes, n)
	}
	return nil
}

func checkUsers(api, field string, ids []string, atLeast int) error {
	if len(ids) < atLeast || len(ids) > MaxUsersPerCall {
		return invalid(api, "%s must hold %d to %d userids, got %d", field, atLeast, MaxUsersPerCall, len(ids))
	}
	for i, id := range ids {
		if id == "" {
			return invalid(api, "%s[%d] is empty", field, i)
		}
	}
	return nil
}
