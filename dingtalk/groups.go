package dingtalk

import (
	"context"
	"fmt"
)

// Groups is how a provisioner makes and keeps groups: create one, add
// members, read who is in it, get its join link, change it (members, name,
// owner, muting) and disband it. NewChatGroups makes plain groups
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
	// Change makes one change. A plain group's change is one call whatever
	// it holds (at most MembersPerAdd adds and MembersPerRemove removals); a
	// scene group's is one call per part: adds, then title, owner and
	// muting, then removals. A new owner must already be a member.
	Change(ctx context.Context, g Group, c *Change) error
	// Disband dissolves the group; only when Limits().Disbandable.
	Disband(ctx context.Context, g Group) error
	// Read returns the group as DingTalk shows it now.
	Read(ctx context.Context, g Group) (*GroupState, error)
	// Limits says how groups of this kind are built.
	Limits() GroupLimits
}

// Change is a change to a group; empty fields are left as they are.
type Change struct {
	Add    []string
	Remove []string
	Name   string
	Owner  string
	Mute   bool // only the owner and admins may speak (chatBannedType 1)
}

// GroupState is a group as DingTalk shows it.
type GroupState struct {
	Name      string
	Owner     string
	Members   []string // nil when Dissolved
	Dissolved bool
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
	// MembersPerRemove is members per removal call.
	MembersPerRemove int
	// OneCallChange is true when a change's adds, removals, name and owner
	// go in one call (plain groups); scene groups take a call for each.
	OneCallChange bool
	// Disbandable is true when DingTalk's API can dissolve such a group
	// (scene groups); a plain group can only be archived.
	Disbandable bool
}

// NewChatGroups returns plain groups made with c's family: chat/create and
// chat/update (Legacy) or /v1.0/im/group/create and /update (V1); members
// read with chat/get; the link from topapi/chat/qrcode/get.
func NewChatGroups(c *Client) Groups { return chatGroups{c} }

type chatGroups struct{ c *Client }

func (g chatGroups) Limits() GroupLimits {
	return GroupLimits{NameRunes: MaxNameRunes, MembersAtCreate: MaxUsersPerCall, MembersPerAdd: MaxUsersPerCall,
		MembersPerRemove: MaxUsersPerCall, OneCallChange: true}
}

func (g chatGroups) Change(ctx context.Context, grp Group, c *Change) error {
	req := &UpdateChatRequest{ChatID: grp.ChatID, Name: c.Name, Owner: c.Owner, AddUserIDs: c.Add, DelUserIDs: c.Remove}
	if c.Mute {
		req.ChatBannedType = ptr(1)
	}
	return g.c.UpdateChat(ctx, req)
}

func (g chatGroups) Disband(context.Context, Group) error {
	return invalid("chat/update", "a plain group cannot be disbanded through DingTalk's API")
}

func (g chatGroups) Read(ctx context.Context, grp Group) (*GroupState, error) {
	info, err := g.c.GetChat(ctx, grp.ChatID)
	if err != nil {
		return nil, err
	}
	if info.Status == 2 {
		return &GroupState{Name: info.Name, Owner: info.Owner, Dissolved: true}, nil
	}
	return &GroupState{Name: info.Name, Owner: info.Owner, Members: info.UserIDs}, nil
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
	return GroupLimits{NameRunes: MaxSceneTitleRunes, MembersAtCreate: 1 + MaxSceneUsersAtCreate, MembersPerAdd: MaxSceneUsersPerAdd,
		Deduplicated: true, MembersPerRemove: MaxSceneUsersPerAdd, Disbandable: true}
}

func (g sceneGroups) Change(ctx context.Context, grp Group, c *Change) error {
	if len(c.Add) > 0 {
		if err := g.c.AddSceneGroupMembers(ctx, grp.OpenConversationID, c.Add); err != nil {
			return err
		}
	}
	if c.Name != "" || c.Owner != "" || c.Mute {
		req := &UpdateSceneGroupRequest{OpenConversationID: grp.OpenConversationID, Title: c.Name, Owner: c.Owner}
		if c.Mute {
			req.ChatBannedType = ptr(1)
		}
		if err := g.c.UpdateSceneGroup(ctx, req); err != nil {
			return err
		}
	}
	if len(c.Remove) > 0 {
		return g.c.RemoveSceneGroupMembers(ctx, grp.OpenConversationID, c.Remove)
	}
	return nil
}

func (g sceneGroups) Disband(ctx context.Context, grp Group) error {
	return g.c.DisbandSceneGroup(ctx, grp.OpenConversationID)
}

// Read is two calls (sceneGroups/query, then members/batchQuery), one when
// the group is dissolved: DingTalk refuses every other call on it then.
func (g sceneGroups) Read(ctx context.Context, grp Group) (*GroupState, error) {
	info, err := g.c.SceneGroup(ctx, grp.OpenConversationID)
	if err != nil {
		return nil, err
	}
	st := &GroupState{Name: info.Title, Owner: info.OwnerUserID, Dissolved: info.Status == 2}
	if st.Dissolved {
		return st, nil
	}
	if st.Members, err = g.c.SceneGroupMembers(ctx, grp.OpenConversationID); err != nil {
		return nil, err
	}
	return st, nil
}

func ptr(n int) *int { return &n }

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
