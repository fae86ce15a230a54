package dingtalk

import (
	"context"
	"errors"
	"strings"
	"testing"

	"provisioner/dingtalk/sim"
)

const template = "tpl-project"

func TestSceneGroupLifecycle(t *testing.T) {
	c, s := setup(t, sim.Config{SceneTemplates: []string{template}}, v1)
	ctx := context.Background()
	req := &CreateSceneGroupRequest{
		Title: strings.Repeat("群", MaxSceneTitleRunes), TemplateID: template, Owner: "o", UserIDs: users("u", 3),
		UUID: "event-key-1", ChatSettings: ChatSettings{ValidationType: ptr(1)},
	}
	first, err := c.CreateSceneGroup(ctx, req)
	if err != nil {
		t.Fatalf("CreateSceneGroup: %v", err)
	}
	again, err := c.CreateSceneGroup(ctx, req)
	if err != nil || *again != *first {
		t.Fatalf("repeated uuid: %+v, %v; want the first group %+v", again, err, first)
	}
	if err := c.AddSceneGroupMembers(ctx, first.OpenConversationID, users("m", MaxSceneUsersPerAdd)); err != nil {
		t.Fatalf("AddSceneGroupMembers: %v", err)
	}
	members, err := c.SceneGroupMembers(ctx, first.OpenConversationID)
	if err != nil || len(members) != 104 || members[0] != "o" {
		t.Fatalf("SceneGroupMembers: %d members (%v), want 104 with the owner first", len(members), err)
	}
	info, err := c.SceneGroup(ctx, first.OpenConversationID)
	if err != nil || !strings.HasPrefix(info.GroupURL, "https://qr.dingtalk.com/") || info.OwnerUserID != "o" || info.TemplateID != template {
		t.Fatalf("SceneGroup = %+v, %v", info, err)
	}
	// The chat id of a scene group serves the oapi reads too.
	if got, err := c.GetChat(ctx, first.ChatID); err != nil || len(got.UserIDs) != 104 {
		t.Fatalf("GetChat on a scene group: %v", err)
	}
	st := s.Stats()
	if st.GroupsCreated != 1 || st.UUIDRepeats != 1 || st.Duplicates != 0 {
		t.Fatalf("stats %+v: want one group for one uuid", st)
	}
	if g, _ := s.Group(first.ChatID); g.Settings["validationType"] != 1 || g.UUID != "event-key-1" {
		t.Fatalf("group %+v", g)
	}
}

func TestSceneGroupRefusals(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		call func(c *Client, cid string) error
		code string // "": refused by the client before any call
	}{
		{"title of 31 characters", func(c *Client, _ string) error {
			_, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: strings.Repeat("群", 31), TemplateID: template, Owner: "o"})
			return err
		}, ""},
		{"1000 user_ids", func(c *Client, _ string) error {
			_, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: "t", TemplateID: template, Owner: "o", UserIDs: users("u", 1000)})
			return err
		}, ""},
		{"101 members in one add", func(c *Client, cid string) error {
			return c.AddSceneGroupMembers(ctx, cid, users("u", 101))
		}, ""},
		{"unpublished template", func(c *Client, _ string) error {
			_, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: "t", TemplateID: "nope", Owner: "o"})
			return err
		}, CodeV1TemplateNotFound},
		{"unknown member", func(c *Client, _ string) error {
			_, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: "t", TemplateID: template, Owner: "o", UserIDs: []string{"ghost"}})
			return err
		}, CodeV1MemberNotFound},
		{"unknown member added", func(c *Client, cid string) error {
			return c.AddSceneGroupMembers(ctx, cid, []string{"ghost"})
		}, CodeV1MemberNotFound},
		{"repeated uuid refused", func(c *Client, _ string) error {
			_, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: "base", TemplateID: template, Owner: "o", UUID: "base"})
			return err
		}, CodeV1InvalidParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := setup(t, sim.Config{SceneTemplates: []string{template}, UnknownUsers: []string{"ghost"}, RefuseRepeatedUUID: true}, v1)
			base, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: "base", TemplateID: template, Owner: "o", UUID: "base"})
			if err != nil {
				t.Fatal(err)
			}
			before := s.Stats()
			err = tt.call(c, base.OpenConversationID)
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || Classify(err) != Permanent {
				t.Fatalf("err %v (code %q, class %v), want permanent %q", err, e.Code, Classify(err), tt.code)
			}
			sent := s.Stats().Calls[e.API] - before.Calls[e.API]
			if tt.code == "" && sent != 0 {
				t.Errorf("an invalid request was sent (%d calls)", sent)
			}
			if n := len(s.Groups()); n != 1 {
				t.Errorf("%d groups, want only the base", n)
			}
		})
	}
}

// TestGroupsLimits checks the two kinds of group the worker can make.
func TestGroupsLimits(t *testing.T) {
	c, _ := setup(t, sim.Config{SceneTemplates: []string{template}}, v1)
	scene, err := NewSceneGroups(c, template)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSceneGroups(c, ""); err == nil {
		t.Error("scene groups without a template accepted")
	}
	chat := NewChatGroups(c)
	if l := chat.Limits(); l != (GroupLimits{NameRunes: 20, MembersAtCreate: 40, MembersPerAdd: 40, MembersPerRemove: 40, OneCallChange: true}) {
		t.Errorf("plain group limits %+v", l)
	}
	if l := scene.Limits(); l != (GroupLimits{NameRunes: 30, MembersAtCreate: 1000, MembersPerAdd: 100, Deduplicated: true, MembersPerRemove: 100, Disbandable: true}) {
		t.Errorf("scene group limits %+v", l)
	}
	ctx := context.Background()
	g, err := scene.CreateGroup(ctx, &NewGroup{Name: "t", Owner: "o", Members: append([]string{"o"}, users("u", 999)...), Key: "k"})
	if err != nil {
		t.Fatalf("a scene group of 1000 in one call: %v", err)
	}
	if m, err := scene.Members(ctx, *g); err != nil || len(m) != 1000 {
		t.Fatalf("Members: %d, %v", len(m), err)
	}
}

// A scene group changed after its creation: members removed, renamed, a
// new owner, muted, then disbanded, after which every call on it is refused
// and sceneGroups/query says status 2.
func TestSceneGroupChanges(t *testing.T) {
	c, s := setup(t, sim.Config{SceneTemplates: []string{template}}, v1)
	ctx := context.Background()
	g, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: "项目", TemplateID: template, Owner: "o", UserIDs: users("u", 3)})
	if err != nil {
		t.Fatal(err)
	}
	cid := g.OpenConversationID
	if err := c.RemoveSceneGroupMembers(ctx, cid, []string{"u0", "u1"}); err != nil {
		t.Fatalf("RemoveSceneGroupMembers: %v", err)
	}
	if err := c.UpdateSceneGroup(ctx, &UpdateSceneGroupRequest{OpenConversationID: cid, Title: "新项目", Owner: "u2",
		ChatSettings: ChatSettings{ChatBannedType: ptr(1)}}); err != nil {
		t.Fatalf("UpdateSceneGroup: %v", err)
	}
	got, _ := s.Group(cid)
	if got.Name != "新项目" || got.Owner != "u2" || len(got.Members) != 2 || got.Settings["chatBannedType"] != 1 {
		t.Fatalf("after the changes: %+v", got)
	}
	var e *Error
	if err := c.UpdateSceneGroup(ctx, &UpdateSceneGroupRequest{OpenConversationID: cid, Owner: "stranger"}); !errors.As(err, &e) || e.Code != CodeV1InvalidParameter {
		t.Errorf("a new owner who is not a member: %v, want parameter.invalid", err)
	}
	if err := c.RemoveSceneGroupMembers(ctx, cid, []string{"u2"}); !errors.As(err, &e) || e.Code != CodeV1InvalidParameter {
		t.Errorf("removing the owner: %v, want parameter.invalid", err)
	}
	if err := c.DisbandSceneGroup(ctx, cid); err != nil {
		t.Fatalf("DisbandSceneGroup: %v", err)
	}
	if info, err := c.SceneGroup(ctx, cid); err != nil || info.Status != 2 {
		t.Errorf("after disbanding: %+v, %v; want status 2", info, err)
	}
	for name, call := range map[string]func() error{
		"add":    func() error { return c.AddSceneGroupMembers(ctx, cid, []string{"u9"}) },
		"remove": func() error { return c.RemoveSceneGroupMembers(ctx, cid, []string{"o"}) },
		"update": func() error {
			return c.UpdateSceneGroup(ctx, &UpdateSceneGroupRequest{OpenConversationID: cid, Title: "x"})
		},
		"disband": func() error { return c.DisbandSceneGroup(ctx, cid) },
		"members": func() error { _, err := c.SceneGroupMembers(ctx, cid); return err },
	} {
		if err := call(); Classify(err) != Permanent {
			t.Errorf("%s after disbanding: %v, want a permanent refusal", name, err)
		}
	}
}

// What DingTalk answers to removing someone absent is undocumented: the
// simulator does nothing by default and refuses when told to.
func TestRemovingAnAbsentMember(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		c, _ := setup(t, sim.Config{SceneTemplates: []string{template}, RefuseAbsentRemovals: refuse}, v1)
		ctx := context.Background()
		g, err := c.CreateSceneGroup(ctx, &CreateSceneGroupRequest{Title: "t", TemplateID: template, Owner: "o", UserIDs: users("u", 1)})
		if err != nil {
			t.Fatal(err)
		}
		err = c.RemoveSceneGroupMembers(ctx, g.OpenConversationID, []string{"absent"})
		if (err != nil) != refuse {
			t.Errorf("RefuseAbsentRemovals %v: %v", refuse, err)
		}
	}
}
