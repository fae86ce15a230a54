package dingtalk

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"unicode/utf8"
)

// Limits DingTalk puts on group chats, in one place. Where v1.0 documents
// none, the old family's are kept.
const (
	MaxNameRunes      = 20   // a group name is 1 to 20 characters (both families)
	MaxUsersPerCall   = 40   // useridlist / add_useridlist per call: documented for the old calls; v1.0 says nothing
	MaxMembersInGroup = 1000 // members in one group

	MaxSceneTitleRunes    = 30  // a scene group's title
	MaxSceneUsersAtCreate = 999 // user_ids in one sceneGroup/create (the historical pages' limit; the owner is extra)
	MaxSceneUsersPerAdd   = 100 // user_ids in one sceneGroup/member/add (the historical pages' limit)
	MaxUUIDBytes          = 64  // a scene group's uuid, as DingTalk suggests
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

// flags returns the settings that are set, keyed by DingTalk's name for them
// in camelCase (chat/create, v1.0 group) or snake_case (scene groups).
func (s ChatSettings) flags(snake bool) map[string]int {
	out := map[string]int{}
	for _, f := range []struct {
		camel, snake string
		v            *int
	}{
		{"showHistoryType", "show_history_type", s.ShowHistoryType},
		{"searchable", "searchable", s.Searchable},
		{"validationType", "validation_type", s.ValidationType},
		{"mentionAllAuthority", "mention_all_authority", s.MentionAllAuthority},
		{"managementType", "management_type", s.ManagementType},
		{"chatBannedType", "chat_banned_type", s.ChatBannedType},
	} {
		if f.v == nil {
			continue
		}
		if snake {
			out[f.snake] = *f.v
		} else {
			out[f.camel] = *f.v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// CreateChatRequest is the body of chat/create (v1.0 group/create takes the
// same fields, the settings under managementOptions).
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

// CreateChat creates a group chat: chat/create in the Legacy family,
// /v1.0/im/group/create in V1. DingTalk has no idempotency key for either:
// when the error's Class is OutcomeUnknown the group may exist anyway.
func (c *Client) CreateChat(ctx context.Context, req *CreateChatRequest) (*CreatedChat, error) {
	api, body := "chat/create", any(req)
	if c.family == V1 {
		api = "v1.0/im/group/create"
		body = struct {
			Name              string         `json:"name"`
			Owner             string         `json:"owner"`
			OwnerType         string         `json:"ownerType"`
			UserIDs           []string       `json:"useridlist"`
			ConversationTag   int            `json:"conversationTag"`
			Icon              string         `json:"icon,omitempty"`
			ManagementOptions map[string]int `json:"managementOptions,omitempty"`
		}{req.Name, req.Owner, "emp", req.UserIDs, 2, req.Icon, req.flags(false)}
	}
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
	if err := c.do(ctx, call{api: api, v1: c.family == V1, method: http.MethodPost, body: body, mutating: true}, &r); err != nil {
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

// UpdateChat changes a group: its name, owner, members or settings, through
// chat/update (Legacy) or /v1.0/im/group/update (V1). What DingTalk answers
// when add_useridlist names a member already in the group is undocumented:
// callers resuming a batch read the group first (GetChat) and add only the
// missing.
func (c *Client) UpdateChat(ctx context.Context, req *UpdateChatRequest) error {
	api, body := "chat/update", any(req)
	if c.family == V1 {
		api = "v1.0/im/group/update"
		body = struct {
			ChatID            string         `json:"chatid"`
			Name              string         `json:"name,omitempty"`
			Owner             string         `json:"owner,omitempty"`
			OwnerType         string         `json:"ownerType,omitempty"`
			AddUserIDs        []string       `json:"add_useridlist,omitempty"`
			DelUserIDs        []string       `json:"del_useridlist,omitempty"`
			Icon              string         `json:"icon,omitempty"`
			ManagementOptions map[string]int `json:"managementOptions,omitempty"`
		}{ChatID: req.ChatID, Name: req.Name, Owner: req.Owner, AddUserIDs: req.AddUserIDs, DelUserIDs: req.DelUserIDs,
			Icon: req.Icon, ManagementOptions: req.flags(false)}
	}
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
	return c.do(ctx, call{api: api, v1: c.family == V1, method: http.MethodPost, body: body, mutating: true}, &r)
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
	return checkRunes(api, "name", name, MaxNameRunes)
}

func checkRunes(api, field, s string, most int) error {
	if n := utf8.RuneCountInString(s); n < 1 || n > most || !utf8.ValidString(s) {
		return invalid(api, "%s must be 1 to %d characters of valid UTF-8, got %d", field, most, n)
	}
	return nil
}

func checkUsers(api, field string, ids []string, atLeast int) error {
	return checkUserCount(api, field, ids, atLeast, MaxUsersPerCall)
}

func checkUserCount(api, field string, ids []string, atLeast, most int) error {
	if len(ids) < atLeast || len(ids) > most {
		return invalid(api, "%s must hold %d to %d userids, got %d", field, atLeast, most, len(ids))
	}
	for i, id := range ids {
		if id == "" {
			return invalid(api, "%s[%d] is empty", field, i)
		}
	}
	return nil
}
