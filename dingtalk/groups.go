package dingtalk

import (
	"context"
	"fmt"
)

// Groups is how a provisioner makes groups: create one, add members, read
// who is in it, and get its join link. NewChatGroups makes plain groups
// through the client's family; NewSceneGroups makes scene groups from a
// template, which DingTalk de-duplicates by a caller's key. Implementations
// are safe for concurrent use.
type Groups interface {
	// CreateGroup creates a group with at most Limits().MembersAtCreate
	// members. Its error is an *Error (see Classify).
	CreateGroup(ctx context.Context, g *NewGroup) (*Group, error)
	// AddMembers adds at most Limits().MembersPerAdd members.
	AddMembers(ctx context.Context, g Group, userIDs []string) error
	// Members returns every member's userid.
	Members(ctx context.Context, g Group) ([]string, error)
	// JoinLink returns the link that joins the group, shared by sharer (a member).
	JoinLink(ctx context.Context, g Group, sharer string) (string, error)
	// Limits says how groups of this kind are built.
	Limits() GroupLimits
}

// NewGroup is a group to create.
type NewGroup struct {
	Name     string   // at most Limits().NameRunes characters
	Owner    string   // also Members[0]
	Members  []string // the owner first, then the others
	Settings ChatSettings
	// Key identifies the business object the group is for. Scene groups send
	// it as the uuid DingTalk de-duplicates creation by; plain groups have no
	// such field and ignore it.
	Key string
}

// Group names a created group by both its ids: some calls take one, some the other.
type Group struct {
	ChatID             string
	OpenConversationID string
}

// GroupLimits are a kind of group's rules.
type GroupLimits struct {
	NameRunes       int // a name is cut to this many characters
	MembersAtCreate int // members in the create call, the owner included
	MembersPerAdd   int // members per add call
	// Deduplicated is true when DingTalk creates one group per Key: a create
	// repeated after an unknown outcome makes no second group.
	Deduplicated bool
}

// NewChatGroups returns plain groups made with c's family: chat/create and
// chat/update (Legacy) or /v1.0/im/group/create and /update (V1); members
// read with chat/get; the link from topapi/chat/qrcode/get.
func NewChatGroups(c *Client) Groups { return chatGroups{c} }

type chatGroups struct{ c *Client }

func (g chatGroups) Limits() GroupLimits {
	return GroupLimits{NameRunes: MaxNameRunes, MembersAtCreate: MaxUsersPerCall, MembersPerAdd: MaxUsersPerCall}
}

func (g chatGroups) CreateGroup(ctx context.Context, n *NewGroup) (*Group, error) {
	chat, err := g.c.CreateChat(ctx, &CreateChatRequest{Name: n.Name, Owner: n.Owner, UserIDs: n.Members, ChatSettings: n.Settings})
	if err != nil {
		return nil, err
	}
	return &Group{ChatID: chat.ChatID, OpenConversationID: chat.OpenConversationID}, nil
}

func (g chatGroups) AddMembers(ctx context.Context, grp Group, userIDs []string) error {
	return g.c.UpdateChat(ctx, &UpdateChatRequest{ChatID: grp.ChatID, AddUserIDs: userIDs})
}

func (g chatGroups) Members(ctx context.Context, grp Group) ([]string, error) {
	info, err := g.c.GetChat(ctx, grp.ChatID)
	if err != nil {
		return nil, err
	}
	return info.UserIDs, nil
}

func (g chatGroups) JoinLink(ctx context.Context, grp Group, sharer string) (string, error) {
	return g.c.QRCodeLink(ctx, grp.ChatID, sharer)
}

// NewSceneGroups returns scene groups made from the published template
// templateID: /v1.0/im/sceneGroup/create with NewGroup.Key as the uuid,
// members added with sceneGroup/member/add and read with
// sceneGroups/members/batchQuery, the join link from sceneGroups/query.
func NewSceneGroups(c *Client, templateID string) (Groups, error) {
	if templateID == "" {
		return nil, fmt.Errorf("dingtalk: a scene group template id is required")
	}
	return sceneGroups{c: c, template: templateID}, nil
}

type sceneGroups struct {
	c        *Client
	template string
}

func (g sceneGroups) Limits() GroupLimits {
	return GroupLimits{NameRunes: MaxSceneTitleRunes, MembersAtCreate: 1 + MaxSceneUsersAtCreate, MembersPerAdd: MaxSceneUsersPerAdd, Deduplicated: true}
}

func (g sceneGroups) CreateGroup(ctx context.Context, n *NewGroup) (*Group, error) {
	var others []string
	for _, m := range n.Members {
		if m != n.Owner {
			others = append(others, m)
		}
	}
	chat, err := g.c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{
		Title: n.Name, TemplateID: g.template, Owner: n.Owner, UserIDs: others, UUID: n.Key, ChatSettings: n.Settings,
	})
	if err != nil {
		return nil, err
	}
	return &Group{ChatID: chat.ChatID, OpenConversationID: chat.OpenConversationID}, nil
}

func (g sceneGroups) AddMembers(ctx context.Context, grp Group, userIDs []string) error {
	return g.c.AddSceneGroupMembers(ctx, grp.OpenConversationID, userIDs)
}

func (g sceneGroups) Members(ctx context.Context, grp Group) ([]string, error) {
	return g.c.SceneGroupMembers(ctx, grp.OpenConversationID)
}

func (g sceneGroups) JoinLink(ctx context.Context, grp Group, _ string) (string, error) {
	info, err := g.c.SceneGroup(ctx, grp.OpenConversationID)
	if err != nil {
		return "", err
	}
	if info.GroupURL == "" {
		return "", &Error{API: "v1.0/im/sceneGroups/query", Class: Transient, ErrMsg: "reply has no groupUrl"}
	}
	return info.GroupURL, nil
}
