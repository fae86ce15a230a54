package dingtalk

import (
	"context"
	"net/http"
	"slices"
)

// CreateSceneGroupRequest is the body of /v1.0/im/sceneGroup/create: a group
// made from a template the organisation published in the developer console.
type CreateSceneGroupRequest struct {
	Title      string   // 1 to 30 characters
	TemplateID string   // the published template's id
	Owner      string   // owner_user_id
	UserIDs    []string // further members, at most MaxSceneUsersAtCreate (the owner need not be listed)
	// UUID is "建群去重的业务ID": DingTalk creates one group per uuid, so a
	// create repeated with the same uuid makes no second group. What the
	// repeat answers (the first group, or an error) is undocumented.
	UUID string
	ChatSettings
}

// CreateSceneGroup creates a scene group. Its chat id also serves chat/get
// and topapi/chat/qrcode/get.
func (c *Client) CreateSceneGroup(ctx context.Context, req *CreateSceneGroupRequest) (*CreatedChat, error) {
	const api = "v1.0/im/sceneGroup/create"
	switch {
	case req.TemplateID == "":
		return nil, invalid(api, "template_id is empty")
	case req.Owner == "":
		return nil, invalid(api, "owner_user_id is empty")
	case len(req.UUID) > MaxUUIDBytes:
		return nil, invalid(api, "uuid is %d bytes, at most %d", len(req.UUID), MaxUUIDBytes)
	}
	if err := checkRunes(api, "title", req.Title, MaxSceneTitleRunes); err != nil {
		return nil, err
	}
	if err := checkUserCount(api, "user_ids", req.UserIDs, 0, MaxSceneUsersAtCreate); err != nil {
		return nil, err
	}
	body := struct {
		Title             string         `json:"title"`
		TemplateID        string         `json:"template_id"`
		Owner             string         `json:"owner_user_id"`
		UserIDs           []string       `json:"user_ids,omitempty"`
		UUID              string         `json:"uuid,omitempty"`
		Icon              string         `json:"icon,omitempty"`
		ManagementOptions map[string]int `json:"management_options,omitempty"`
	}{req.Title, req.TemplateID, req.Owner, req.UserIDs, req.UUID, req.Icon, req.flags(true)}
	var r struct {
		reply
		OpenConversationID string `json:"open_conversation_id"`
		ChatID             string `json:"chat_id"`
	}
	if err := c.do(ctx, call{api: api, v1: true, method: http.MethodPost, body: body, mutating: true}, &r); err != nil {
		return nil, err
	}
	if r.OpenConversationID == "" {
		return nil, &Error{API: api, HTTPStatus: http.StatusOK, Class: OutcomeUnknown, ErrMsg: "reply has no open_conversation_id"}
	}
	return &CreatedChat{ChatID: r.ChatID, OpenConversationID: r.OpenConversationID, ConversationTag: 2}, nil
}

// AddSceneGroupMembers adds at most MaxSceneUsersPerAdd members to a scene
// group. What DingTalk answers for a member already in the group is
// undocumented: callers resuming a batch read SceneGroupMembers first.
func (c *Client) AddSceneGroupMembers(ctx context.Context, openConversationID string, userIDs []string) error {
	return c.sceneMembersCall(ctx, "v1.0/im/sceneGroup/member/add", openConversationID, userIDs)
}

// RemoveSceneGroupMembers removes at most MaxSceneUsersPerAdd members from
// a scene group (not its owner). What DingTalk answers for someone not in
// the group is undocumented: callers resuming read SceneGroupMembers first.
func (c *Client) RemoveSceneGroupMembers(ctx context.Context, openConversationID string, userIDs []string) error {
	return c.sceneMembersCall(ctx, "v1.0/im/sceneGroup/member/delete", openConversationID, userIDs)
}

// sceneMembersCall adds or removes members: both calls take the same body.
func (c *Client) sceneMembersCall(ctx context.Context, api, openConversationID string, userIDs []string) error {
	if openConversationID == "" {
		return invalid(api, "open_conversation_id is empty")
	}
	if err := checkUserCount(api, "user_ids", userIDs, 1, MaxSceneUsersPerAdd); err != nil {
		return err
	}
	body := struct {
		OpenConversationID string   `json:"open_conversation_id"`
		UserIDs            []string `json:"user_ids"`
	}{openConversationID, userIDs}
	var r reply
	return c.do(ctx, call{api: api, v1: true, method: http.MethodPost, body: body, mutating: true}, &r)
}

// UpdateSceneGroupRequest is the body of /v1.0/im/sceneGroup/update. Empty
// fields are left as they are.
type UpdateSceneGroupRequest struct {
	OpenConversationID string
	Title              string // at most 30 characters
	Owner              string // owner_user_id: must already be a member
	ChatSettings              // management_options, in snake_case (chat_banned_type 1 mutes everyone)
}

// UpdateSceneGroup renames a scene group, gives it a new owner or changes
// its settings, in one call.
func (c *Client) UpdateSceneGroup(ctx context.Context, req *UpdateSceneGroupRequest) error {
	const api = "v1.0/im/sceneGroup/update"
	if req.OpenConversationID == "" {
		return invalid(api, "open_conversation_id is empty")
	}
	if req.Title != "" {
		if err := checkRunes(api, "title", req.Title, MaxSceneTitleRunes); err != nil {
			return err
		}
	}
	body := struct {
		OpenConversationID string         `json:"open_conversation_id"`
		Title              string         `json:"title,omitempty"`
		Owner              string         `json:"owner_user_id,omitempty"`
		Icon               string         `json:"icon,omitempty"`
		ManagementOptions  map[string]int `json:"management_options,omitempty"`
	}{req.OpenConversationID, req.Title, req.Owner, req.Icon, req.flags(true)}
	var r reply
	return c.do(ctx, call{api: api, v1: true, method: http.MethodPost, body: body, mutating: true}, &r)
}

// DisbandSceneGroup disbands a scene group through
// /v1.0/im/chat/scenegroup/disband (the official SDK's DsbandOpenSceneGroup).
// Afterwards every call on it is refused and SceneGroup says Status 2.
// Plain groups have no such call.
func (c *Client) DisbandSceneGroup(ctx context.Context, openConversationID string) error {
	const api = "v1.0/im/chat/scenegroup/disband"
	if openConversationID == "" {
		return invalid(api, "openConversationId is empty")
	}
	body := struct {
		OpenConversationID string `json:"openConversationId"`
	}{openConversationID}
	var r reply
	return c.do(ctx, call{api: api, v1: true, method: http.MethodPost, body: body, mutating: true}, &r)
}

// SceneGroupMembers returns every member's userid, through
// /v1.0/im/sceneGroups/members/batchQuery (a group of at most 1000 members
// comes back in one page).
func (c *Client) SceneGroupMembers(ctx context.Context, openConversationID string) ([]string, error) {
	const api = "v1.0/im/sceneGroups/members/batchQuery"
	if openConversationID == "" {
		return nil, invalid(api, "openConversationId is empty")
	}
	var all []string
	next := ""
	for page := 0; ; page++ {
		body := struct {
			OpenConversationID string `json:"openConversationId"`
			MaxResults         int    `json:"maxResults"`
			NextToken          string `json:"nextToken,omitempty"`
		}{openConversationID, MaxMembersInGroup, next}
		var r struct {
			reply
			MemberUserIDs []string `json:"memberUserIds"`
			HasMore       bool     `json:"hasMore"`
			NextToken     string   `json:"nextToken"`
		}
		if err := c.do(ctx, call{api: api, v1: true, method: http.MethodPost, body: body}, &r); err != nil {
			return nil, err
		}
		all = append(all, r.MemberUserIDs...)
		if !r.HasMore || r.NextToken == "" || r.NextToken == next || page > MaxMembersInGroup {
			return slices.Compact(all), nil
		}
		next = r.NextToken
	}
}

// SceneGroupInfo is a scene group as /v1.0/im/sceneGroups/query describes it.
type SceneGroupInfo struct {
	Title       string
	OwnerUserID string
	GroupURL    string // the join link
	TemplateID  string
	Status      int
}

// SceneGroup reads a scene group, its join link included.
func (c *Client) SceneGroup(ctx context.Context, openConversationID string) (*SceneGroupInfo, error) {
	const api = "v1.0/im/sceneGroups/query"
	if openConversationID == "" {
		return nil, invalid(api, "openConversationId is empty")
	}
	body := struct {
		OpenConversationID string `json:"openConversationId"`
	}{openConversationID}
	var r struct {
		reply
		Title       string `json:"title"`
		OwnerUserID string `json:"ownerUserId"`
		GroupURL    string `json:"groupUrl"`
		TemplateID  string `json:"templateId"`
		Status      int    `json:"status"` // shadows reply's IP-ban status, which a 200 with a group never is
	}
	if err := c.do(ctx, call{api: api, v1: true, method: http.MethodPost, body: body}, &r); err != nil {
		return nil, err
	}
	return &SceneGroupInfo{Title: r.Title, OwnerUserID: r.OwnerUserID, GroupURL: r.GroupURL, TemplateID: r.TemplateID, Status: r.Status}, nil
}
