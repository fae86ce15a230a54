package dingtalk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"provisioner/dingtalk/sim"
)

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func TestCreateChat(t *testing.T) {
	c, s := setup(t, sim.Config{})
	ctx := context.Background()
	got, err := c.CreateChat(ctx, &CreateChatRequest{
		Name: "Apollo 发射群 🚀", Owner: "manager4220", UserIDs: []string{"manager4220", "u1", "u2"},
		ChatSettings: ChatSettings{Searchable: ptr(1), ValidationType: ptr(0), Icon: "@lADP"},
	})
	if err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	if got.ChatID == "" || got.OpenConversationID == "" || got.ConversationTag != 2 {
		t.Fatalf("CreateChat = %+v, want chatid, openConversationId and tag 2", got)
	}
	g, ok := s.Group(got.ChatID)
	if !ok {
		t.Fatalf("simulator has no group %s", got.ChatID)
	}
	if g.Owner != "manager4220" || !slices.Equal(g.Members, []string{"manager4220", "u1", "u2"}) {
		t.Errorf("group = owner %q members %v", g.Owner, g.Members)
	}
	if g.Settings["searchable"] != 1 || g.Icon != "@lADP" {
		t.Errorf("settings not passed on: %v icon %q", g.Settings, g.Icon)
	}
	if _, set := g.Settings["managementType"]; set {
		t.Errorf("unset setting sent: %v", g.Settings)
	}
}

func TestChatErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		call     func(c *Client, chatID string) error
		wantCode int // 0: refused by the client before any call
	}{
		{"create: unknown user", func(c *Client, _ string) error {
			_, err := c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"o", "ghost"}})
			return err
		}, CodeInvalidUserIDOnChat},
		{"create: name of 21 characters", func(c *Client, _ string) error {
			_, err := c.CreateChat(ctx, &CreateChatRequest{Name: strings.Repeat("群", 21), Owner: "o", UserIDs: []string{"o"}})
			return err
		}, 0},
		{"create: empty name", func(c *Client, _ string) error {
			_, err := c.CreateChat(ctx, &CreateChatRequest{Owner: "o", UserIDs: []string{"o"}})
			return err
		}, 0},
		{"create: owner not a member", func(c *Client, _ string) error {
			_, err := c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"u1"}})
			return err
		}, 0},
		{"create: 41 users", func(c *Client, _ string) error {
			_, err := c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "u0", UserIDs: users("u", 41)})
			return err
		}, 0},
		{"update: unknown chat", func(c *Client, _ string) error {
			return c.UpdateChat(ctx, &UpdateChatRequest{ChatID: "chatnope", AddUserIDs: []string{"u9"}})
		}, CodeInvalidChatID},
		{"update: unknown user", func(c *Client, id string) error {
			return c.UpdateChat(ctx, &UpdateChatRequest{ChatID: id, AddUserIDs: []string{"ghost"}})
		}, CodeInvalidUserIDOnChat},
		{"update: lists overlap", func(c *Client, id string) error {
			return c.UpdateChat(ctx, &UpdateChatRequest{ChatID: id, AddUserIDs: []string{"u9"}, DelUserIDs: []string{"u9"}})
		}, CodeMemberListsOverlap},
		{"update: 41 users", func(c *Client, id string) error {
			return c.UpdateChat(ctx, &UpdateChatRequest{ChatID: id, AddUserIDs: users("x", 41)})
		}, 0},
		{"get: unknown chat", func(c *Client, _ string) error {
			_, err := c.GetChat(ctx, "chatnope")
			return err
		}, CodeInvalidChatID},
		{"qrcode: unknown chat", func(c *Client, _ string) error {
			_, err := c.QRCodeLink(ctx, "chatnope", "o")
			return err
		}, CodeInvalidChat},
		{"qrcode: unknown user", func(c *Client, id string) error {
			_, err := c.QRCodeLink(ctx, id, "ghost")
			return err
		}, CodeInvalidUserID},
		{"qrcode: user not in group", func(c *Client, id string) error {
			_, err := c.QRCodeLink(ctx, id, "outsider")
			return err
		}, CodeUserNotInGroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := setup(t, sim.Config{UnknownUsers: []string{"ghost"}})
			chat, err := c.CreateChat(ctx, &CreateChatRequest{Name: "base", Owner: "o", UserIDs: []string{"o", "u1"}})
			if err != nil {
				t.Fatalf("CreateChat: %v", err)
			}
			before := s.Stats()
			err = tt.call(c, chat.ChatID)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.ErrCode != tt.wantCode || Classify(err) != Permanent {
				t.Fatalf("errcode %d class %v, want %d permanent (%v)", e.ErrCode, Classify(err), tt.wantCode, err)
			}
			if !strings.HasPrefix(err.Error(), "dingtalk: ") {
				t.Errorf("error text %q lacks the package prefix", err)
			}
			sent := s.Stats().Calls[e.API] - before.Calls[e.API]
			if tt.wantCode == 0 && sent != 0 {
				t.Errorf("an invalid request was sent to DingTalk (%d calls)", sent)
			}
		})
	}
}

func TestUpdateChatAddsMembersUpToTheGroupLimit(t *testing.T) {
	c, s := setup(t, sim.Config{})
	ctx := context.Background()
	all := users("m", 1001)
	chat, err := c.CreateChat(ctx, &CreateChatRequest{Name: "big", Owner: all[0], UserIDs: all[:40]})
	if err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	for i := 40; i < 1000; i += 40 {
		if err := c.UpdateChat(ctx, &UpdateChatRequest{ChatID: chat.ChatID, AddUserIDs: all[i:min(i+40, 1000)]}); err != nil {
			t.Fatalf("UpdateChat batch at %d: %v", i, err)
		}
	}
	// Adding members again changes nothing: a retried batch is harmless.
	if err := c.UpdateChat(ctx, &UpdateChatRequest{ChatID: chat.ChatID, AddUserIDs: all[960:1000]}); err != nil {
		t.Fatalf("repeated batch: %v", err)
	}
	info, err := c.GetChat(ctx, chat.ChatID)
	if err != nil {
		t.Fatalf("GetChat: %v", err)
	}
	if len(info.UserIDs) != 1000 || info.Owner != all[0] || info.Name != "big" || info.Status != 1 {
		t.Fatalf("chat_info: %d members, owner %q, name %q, status %d", len(info.UserIDs), info.Owner, info.Name, info.Status)
	}
	err = c.UpdateChat(ctx, &UpdateChatRequest{ChatID: chat.ChatID, AddUserIDs: all[1000:]})
	var e *Error
	if !errors.As(err, &e) || e.ErrCode != CodeGroupTooLarge || Classify(err) != Permanent {
		t.Fatalf("1001st member: %v, want errcode %d", err, CodeGroupTooLarge)
	}
	if g, _ := s.Group(chat.ChatID); len(g.Members) != 1000 {
		t.Fatalf("group has %d members after a refused update", len(g.Members))
	}
}

func TestQRCodeLink(t *testing.T) {
	c, _ := setup(t, sim.Config{})
	ctx := context.Background()
	chat, err := c.CreateChat(ctx, &CreateChatRequest{Name: "qr", Owner: "o", UserIDs: []string{"o", "u1"}})
	if err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	link, err := c.QRCodeLink(ctx, chat.ChatID, "o")
	if err != nil {
		t.Fatalf("QRCodeLink: %v", err)
	}
	if !strings.HasPrefix(link, "https://qr.dingtalk.com/action/joingroup?code=") {
		t.Fatalf("link = %q", link)
	}
}

// TestV1GroupCalls runs the plain-group calls in the v1.0 family: the token
// from /v1.0/oauth2/accessToken serves both hosts, group/create and update
// go to v1.0, reads and links to oapi.
func TestV1GroupCalls(t *testing.T) {
	c, s := setup(t, sim.Config{UnknownUsers: []string{"ghost"}}, v1)
	ctx := context.Background()
	chat, err := c.CreateChat(ctx, &CreateChatRequest{
		Name: "发射群 🚀", Owner: "o", UserIDs: []string{"o", "u1"}, ChatSettings: ChatSettings{Searchable: ptr(1)},
	})
	if err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	if err := c.UpdateChat(ctx, &UpdateChatRequest{ChatID: chat.ChatID, AddUserIDs: users("m", 40)}); err != nil {
		t.Fatalf("UpdateChat: %v", err)
	}
	info, err := c.GetChat(ctx, chat.ChatID)
	if err != nil || len(info.UserIDs) != 42 || info.Searchable != 1 {
		t.Fatalf("GetChat = %+v, %v; want 42 members, searchable", info, err)
	}
	if _, err := c.QRCodeLink(ctx, chat.ChatID, "o"); err != nil {
		t.Fatalf("QRCodeLink: %v", err)
	}
	_, err = c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"o", "ghost"}})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeV1MemberNotFound || e.HTTPStatus != 400 || e.RequestID == "" || Classify(err) != Permanent {
		t.Fatalf("unknown member: %v (code %q), want a permanent 400 member.notFound with a request id", err, e.Code)
	}
	st := s.Stats()
	want := map[string]int{"v1.0/oauth2/accessToken": 1, "v1.0/im/group/create": 2, "v1.0/im/group/update": 1, "chat/get": 1, "topapi/chat/qrcode/get": 1}
	for api, n := range want {
		if st.Calls[api] != n {
			t.Errorf("%s called %d times, want %d (all calls: %v)", api, st.Calls[api], n, st.Calls)
		}
	}
	if st.Calls["gettoken"] != 0 || st.Calls["chat/create"] != 0 || st.Calls["chat/update"] != 0 {
		t.Errorf("v1 client used the old family: %v", st.Calls)
	}
}

// TestQuotaExhausted: both families' answer to a used-up monthly quota is
// its own class, distinct from a rate limit.
func TestQuotaExhausted(t *testing.T) {
	for _, family := range []Family{Legacy, V1} {
		t.Run(string(family), func(t *testing.T) {
			c, s := setup(t, sim.Config{MonthlyQuota: 1}, func(o *Options) { o.Family = family })
			mustCreate(t, c)
			_, err := c.CreateChat(context.Background(), &CreateChatRequest{Name: "t", Owner: "o", UserIDs: []string{"o"}})
			if Classify(err) != QuotaExhausted {
				t.Fatalf("second call: %v (class %v), want quota exhausted", err, Classify(err))
			}
			if st := s.Stats(); st.QuotaRefused != 1 || st.GroupsCreated != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A plain group changed in one update call, in each family: members added
// and removed, renamed, a new owner, muted. The two undocumented answers
// (adding and making owner in one call; removing someone absent) are
// refused when the simulator is told to.
func TestChatChanges(t *testing.T) {
	for _, family := range []Family{Legacy, V1} {
		t.Run(string(family), func(t *testing.T) {
			withFamily := func(o *Options) { o.Family = family }
			c, s := setup(t, sim.Config{}, withFamily)
			ctx := context.Background()
			chat, err := c.CreateChat(ctx, &CreateChatRequest{Name: "项目", Owner: "o", UserIDs: []string{"o", "a", "b"}})
			if err != nil {
				t.Fatal(err)
			}
			err = c.UpdateChat(ctx, &UpdateChatRequest{ChatID: chat.ChatID, Name: "新项目", Owner: "n", AddUserIDs: []string{"n"},
				DelUserIDs: []string{"a", "o"}, ChatSettings: ChatSettings{ChatBannedType: ptr(1)}})
			if err != nil {
				t.Fatalf("UpdateChat: %v", err)
			}
			g, _ := s.Group(chat.ChatID)
			if g.Name != "新项目" || g.Owner != "n" || strings.Join(g.Members, ",") != "b,n" || g.Settings["chatBannedType"] != 1 {
				t.Fatalf("after the update: %+v", g)
			}

			strict, s2 := setup(t, sim.Config{RefuseOwnerAddedInSameCall: true, RefuseAbsentRemovals: true}, withFamily)
			chat, err = strict.CreateChat(ctx, &CreateChatRequest{Name: "p", Owner: "o", UserIDs: []string{"o", "a"}})
			if err != nil {
				t.Fatal(err)
			}
			var e *Error
			if err := strict.UpdateChat(ctx, &UpdateChatRequest{ChatID: chat.ChatID, Owner: "n", AddUserIDs: []string{"n"}}); !errors.As(err, &e) || !e.Refused() {
				t.Errorf("add and make owner in one call, refused by this DingTalk: %v", err)
			}
			if err := strict.UpdateChat(ctx, &UpdateChatRequest{ChatID: chat.ChatID, DelUserIDs: []string{"absent"}}); !errors.As(err, &e) || !e.Refused() {
				t.Errorf("removing someone absent, refused by this DingTalk: %v", err)
			} else if family == Legacy && e.ErrCode != CodeUserNotInGroup {
				t.Errorf("removing someone absent: errcode %d, want %d", e.ErrCode, CodeUserNotInGroup)
			}
			if g, _ := s2.Group(chat.ChatID); g.Owner != "o" || len(g.Members) != 2 {
				t.Errorf("a refused update changed the group: %+v", g)
			}
		})
	}
}
