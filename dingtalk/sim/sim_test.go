package sim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"provisioner/dingtalk/sim"
)

// harness is a simulator behind an httptest server, with a valid token.
type harness struct {
	t     *testing.T
	s     *sim.Server
	url   string
	token string
}

func setup(t *testing.T, cfg sim.Config) *harness {
	t.Helper()
	cfg.AppKey, cfg.AppSecret = "key", "secret"
	s := sim.New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	h := &harness{t: t, s: s, url: srv.URL}
	r := h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", "")
	h.token, _ = r["access_token"].(string)
	if h.token == "" {
		t.Fatalf("gettoken: %v", r)
	}
	return h
}

// do sends one request and decodes the JSON reply.
func (h *harness) do(method, path, contentType, body string) map[string]any {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return h.send(req)
}

// send sends req and decodes the JSON reply, with its HTTP status as "http_status".
func (h *harness) send(req *http.Request) map[string]any {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := map[string]any{"http_status": float64(resp.StatusCode)}
	_ = json.Unmarshal(data, &out)
	return out
}

func (h *harness) post(api, body string) map[string]any {
	h.t.Helper()
	return h.do("POST", "/"+api+"?access_token="+h.token, "application/json", body)
}

func code(r map[string]any) int {
	c, _ := r["errcode"].(float64)
	return int(c)
}

func members(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", fmt.Sprintf("u%d", i))
	}
	return "[" + strings.Join(ids, ",") + "]"
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		api  string
		body string
		want int
	}{
		{"create ok", "chat/create", `{"name":"群","owner":"u0","useridlist":["u0","u1"]}`, 0},
		{"create: 20 characters", "chat/create", `{"name":"一二三四五六七八九十一二三四五六七八九十","owner":"u0","useridlist":["u0"]}`, 0},
		{"create: 21 characters", "chat/create", `{"name":"一二三四五六七八九十一二三四五六七八九十一","owner":"u0","useridlist":["u0"]}`, 400002},
		{"create: no name", "chat/create", `{"owner":"u0","useridlist":["u0"]}`, 400002},
		{"create: owner not in list", "chat/create", `{"name":"n","owner":"boss","useridlist":["u0"]}`, 400002},
		{"create: no members", "chat/create", `{"name":"n","owner":"u0","useridlist":[]}`, 400002},
		{"create: 40 members", "chat/create", `{"name":"n","owner":"u0","useridlist":` + members(40) + `}`, 0},
		{"create: 41 members", "chat/create", `{"name":"n","owner":"u0","useridlist":` + members(41) + `}`, 49011},
		{"create: unknown user", "chat/create", `{"name":"n","owner":"u0","useridlist":["u0","ghost"]}`, 33012},
		{"create: bad flag", "chat/create", `{"name":"n","owner":"u0","useridlist":["u0"],"searchable":2}`, 400002},
		{"create: mistyped field", "chat/create", `{"name":5,"owner":"u0","useridlist":["u0"]}`, 400002},
		{"create: not JSON", "chat/create", `name=n`, 400002},
		{"update: no chatid", "chat/update", `{"add_useridlist":["u9"]}`, 49000},
		{"update: unknown chat", "chat/update", `{"chatid":"nope","add_useridlist":["u9"]}`, 40016},
		{"qrcode: no chat", "topapi/chat/qrcode/get", `{"userid":"u0"}`, 34001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t, sim.Config{UnknownUsers: []string{"ghost"}})
			r := h.post(tt.api, tt.body)
			if code(r) != tt.want {
				t.Fatalf("errcode = %d (%v), want %d", code(r), r["errmsg"], tt.want)
			}
			if _, ok := r["request_id"]; !ok {
				t.Errorf("reply has no request_id: %v", r)
			}
			wantGroups := 0
			if tt.api == "chat/create" && tt.want == 0 {
				wantGroups = 1
			}
			if n := len(h.s.Groups()); n != wantGroups {
				t.Errorf("%d groups after the call, want %d", n, wantGroups)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	h := setup(t, sim.Config{})
	if r := h.do("GET", "/gettoken?appkey=key&appsecret=wrong", "", ""); code(r) != 40089 {
		t.Errorf("wrong secret: errcode %d, want 40089", code(r))
	}
	if r := h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", ""); r["access_token"] != h.token {
		t.Errorf("a second gettoken while valid gave %v, want the same token", r["access_token"])
	}
	if r := h.do("GET", "/chat/get?chatid=x", "", ""); code(r) != 40014 {
		t.Errorf("no token: errcode %d, want 40014", code(r))
	}
	h.s.ExpireTokens()
	if r := h.do("GET", "/chat/get?chatid=x&access_token="+h.token, "", ""); code(r) != 42001 {
		t.Errorf("expired token: errcode %d, want 42001", code(r))
	}
	if r := h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", ""); r["access_token"] == h.token {
		t.Error("gettoken after expiry returned the expired token")
	}
	if r := h.do("DELETE", "/chat/get", "", ""); r["http_status"] != float64(404) {
		t.Errorf("wrong method: %v, want 404", r["http_status"])
	}
}

func TestGroupLifecycleAndDuplicates(t *testing.T) {
	h := setup(t, sim.Config{})
	create := `{"name":"Apollo","owner":"u0","useridlist":["u0","u1","u1"]}`
	r := h.post("chat/create", create)
	chat, _ := r["chatid"].(string)
	if code(r) != 0 || chat == "" || r["openConversationId"] == "" || r["conversationTag"] != float64(2) {
		t.Fatalf("create: %v", r)
	}
	if r := h.post("chat/update", `{"chatid":"`+chat+`","add_useridlist":["u2","u1"],"del_useridlist":["u3"]}`); code(r) != 0 {
		t.Fatalf("update: %v", r)
	}
	if r := h.post("chat/update", `{"chatid":"`+chat+`","add_useridlist":["u4"],"del_useridlist":["u4"]}`); code(r) != 49004 {
		t.Fatalf("overlapping update: errcode %d, want 49004", code(r))
	}
	got := h.do("GET", "/chat/get?chatid="+url.QueryEscape(chat)+"&access_token="+h.token, "", "")
	info, _ := got["chat_info"].(map[string]any)
	if fmt.Sprint(info["useridlist"]) != "[u0 u1 u2]" || info["owner"] != "u0" || info["status"] != float64(1) {
		t.Fatalf("chat_info = %v", info)
	}
	// The topapi family also takes form bodies.
	form := h.do("POST", "/topapi/chat/qrcode/get?access_token="+h.token, "application/x-www-form-urlencoded", "chatid="+chat+"&userid=u2")
	if code(form) != 0 || !strings.HasPrefix(fmt.Sprint(form["result"]), "https://qr.dingtalk.com/") || form["success"] != true {
		t.Fatalf("qrcode: %v", form)
	}
	if r := h.post("topapi/chat/qrcode/get", `{"chatid":"`+chat+`","userid":"u9"}`); code(r) != 60124 {
		t.Fatalf("qrcode by a non-member: errcode %d, want 60124", code(r))
	}
	if st := h.s.Stats(); st.Duplicates != 0 || st.GroupsCreated != 1 {
		t.Fatalf("stats after one create: %+v", st)
	}
	h.post("chat/create", `{"name":"Apollo","owner":"u0","useridlist":["u1","u0"]}`)
	if st := h.s.Stats(); st.Duplicates != 1 || st.GroupsCreated != 2 || st.Calls["chat/create"] != 2 {
		t.Fatalf("stats after a repeated create: %+v", st)
	}
}

func TestFaults(t *testing.T) {
	const calls = 50
	tests := []struct {
		name   string
		faults sim.Faults
		check  func(t *testing.T, replies []map[string]any, st sim.Stats, groups int)
	}{
		{"busy", sim.Faults{BusyRate: 1}, func(t *testing.T, rs []map[string]any, st sim.Stats, groups int) {
			for _, r := range rs {
				if c := code(r); c != -1 && c != 400001 {
					t.Fatalf("errcode %d, want -1 or 400001", c)
				}
			}
			if st.Busy != calls || groups != 0 {
				t.Fatalf("busy %d groups %d, want %d and 0", st.Busy, groups, calls)
			}
		}},
		{"bad gateway", sim.Faults{BadGatewayRate: 1}, func(t *testing.T, rs []map[string]any, st sim.Stats, groups int) {
			if rs[0]["http_status"] != float64(502) || st.BadGateways != calls || groups != 0 {
				t.Fatalf("status %v, 502s %d, groups %d", rs[0]["http_status"], st.BadGateways, groups)
			}
		}},
		{"lost reply", sim.Faults{LostReplyRate: 1}, func(t *testing.T, rs []map[string]any, st sim.Stats, groups int) {
			if rs[0]["http_status"] != float64(502) || st.LostReplies != calls || groups != calls {
				t.Fatalf("status %v, lost %d, groups %d: the effect must happen", rs[0]["http_status"], st.LostReplies, groups)
			}
		}},
		{"QPS", sim.Faults{QPS: 10}, func(t *testing.T, rs []map[string]any, st sim.Stats, groups int) {
			limited := 0
			for _, r := range rs {
				if code(r) == 90018 {
					limited++
				}
			}
			if limited == 0 || limited != st.RateLimited || groups != calls-limited {
				t.Fatalf("limited %d (stats %d), groups %d", limited, st.RateLimited, groups)
			}
		}},
		{"half busy", sim.Faults{BusyRate: 0.5}, func(t *testing.T, rs []map[string]any, st sim.Stats, groups int) {
			if st.Busy == 0 || st.Busy == calls || st.Busy+groups != calls {
				t.Fatalf("busy %d groups %d of %d", st.Busy, groups, calls)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t, sim.Config{Seed: 7})
			h.s.SetFaults(tt.faults)
			var replies []map[string]any
			for i := range calls {
				replies = append(replies, h.post("chat/create", fmt.Sprintf(`{"name":"g%d","owner":"u0","useridlist":["u0"]}`, i)))
			}
			tt.check(t, replies, h.s.Stats(), len(h.s.Groups()))
		})
	}
}

func TestTopAPIRateLimitShape(t *testing.T) {
	h := setup(t, sim.Config{})
	r := h.post("chat/create", `{"name":"n","owner":"u0","useridlist":["u0"]}`)
	chat := r["chatid"].(string)
	h.s.SetFaults(sim.Faults{QPS: 1})
	var last map[string]any
	for range 5 {
		last = h.post("topapi/chat/qrcode/get", `{"chatid":"`+chat+`","userid":"u0"}`)
	}
	if code(last) != 88 || !strings.Contains(fmt.Sprint(last["errmsg"]), "subcode=90018") {
		t.Fatalf("topapi over QPS: %v, want errcode 88 with subcode=90018", last)
	}
}

// v1 sends a v1.0 call with the token in the header.
func (h *harness) v1(api, body string) map[string]any {
	h.t.Helper()
	req, err := http.NewRequest("POST", h.url+"/"+api, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-acs-dingtalk-access-token", h.token)
	return h.send(req)
}

func TestV1Shapes(t *testing.T) {
	h := setup(t, sim.Config{UnknownUsers: []string{"ghost"}, SceneTemplates: []string{"tpl"}})
	tok := h.do("POST", "/v1.0/oauth2/accessToken", "application/json", `{"appKey":"key","appSecret":"secret"}`)
	if tok["accessToken"] != h.token || tok["expireIn"] == nil {
		t.Fatalf("v1.0 token %v: want the same token as gettoken", tok)
	}
	if r := h.do("POST", "/v1.0/oauth2/accessToken", "application/json", `{"appKey":"key","appSecret":"no"}`); r["http_status"] != float64(400) || r["code"] != "invalidClientIdOrSecret" {
		t.Errorf("bad v1.0 credentials: %v", r)
	}
	// v1.0 takes the header only; oapi takes the query only.
	if r := h.do("POST", "/v1.0/im/group/create?access_token="+h.token, "application/json", `{}`); r["http_status"] != float64(400) || r["Code"] != "AuthenticationFailed.MissingParameter" {
		t.Errorf("v1.0 with a query-string token: %v", r)
	}
	req, _ := http.NewRequest("GET", h.url+"/chat/get?chatid=x", nil)
	req.Header.Set("x-acs-dingtalk-access-token", h.token)
	if oapi := h.send(req); code(oapi) != 88 {
		t.Errorf("oapi with the token in a header: %v, want errcode 88", oapi)
	}
	h.s.ExpireTokens()
	if r := h.v1("v1.0/im/group/create", `{}`); r["http_status"] != float64(401) || r["code"] != "InvalidAuthentication" {
		t.Errorf("expired token on v1.0: %v", r)
	}
	h.token = h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", "")["access_token"].(string)

	tests := []struct {
		name, api, body string
		status          float64
		code            string
	}{
		{"create ok", "v1.0/im/group/create", `{"name":"n","owner":"o","ownerType":"emp","useridlist":["o"],"managementOptions":{"searchable":1}}`, 200, ""},
		{"create: 21 characters", "v1.0/im/group/create", `{"name":"一二三四五六七八九十一二三四五六七八九十一","owner":"o","useridlist":["o"]}`, 400, "parameter.invalid"},
		{"create: unknown user", "v1.0/im/group/create", `{"name":"n","owner":"o","useridlist":["o","ghost"]}`, 400, "member.notFound"},
		{"update: unknown chat", "v1.0/im/group/update", `{"chatid":"nope","add_useridlist":["u"]}`, 400, "parameter.invalid"},
		{"scene: no template", "v1.0/im/sceneGroup/create", `{"title":"t","template_id":"x","owner_user_id":"o"}`, 400, "groupTemplate.notFound"},
		{"scene: 31 characters", "v1.0/im/sceneGroup/create", `{"title":"` + strings.Repeat("群", 31) + `","template_id":"tpl","owner_user_id":"o"}`, 400, "parameter.invalid"},
		{"scene: 1000 user_ids", "v1.0/im/sceneGroup/create", `{"title":"t","template_id":"tpl","owner_user_id":"o","user_ids":` + members(1000) + `}`, 400, "member.exceed"},
		{"scene ok", "v1.0/im/sceneGroup/create", `{"title":"` + strings.Repeat("群", 30) + `","template_id":"tpl","owner_user_id":"o","user_ids":` + members(999) + `,"uuid":"k"}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.v1(tt.api, tt.body)
			if r["http_status"] != tt.status || (tt.code != "" && (r["code"] != tt.code || r["requestid"] == nil)) {
				t.Fatalf("reply %v, want HTTP %v code %q with a requestid", r, tt.status, tt.code)
			}
			if _, has := r["errcode"]; has {
				t.Errorf("a v1.0 reply carries errcode: %v", r)
			}
		})
	}

	h.s.SetFaults(sim.Faults{QPS: 1})
	var last map[string]any
	for range 5 {
		last = h.v1("v1.0/im/sceneGroups/query", `{"openConversationId":"x"}`)
	}
	if last["http_status"] != float64(403) || last["Code"] != "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi" {
		t.Errorf("v1.0 over QPS: %v", last)
	}
	h.s.SetFaults(sim.Faults{BusyRate: 1})
	if r := h.v1("v1.0/im/sceneGroups/query", `{"openConversationId":"x"}`); !(r["http_status"] == float64(429) && r["code"] == "system.busy") && !(r["http_status"] == float64(500) && r["code"] == "system.error") {
		t.Errorf("v1.0 busy: %v", r)
	}
}

// The quota counts calls (not token calls), refuses in each family's shape
// once used up, and starts again with SetMonthlyQuota.
func TestMonthlyQuota(t *testing.T) {
	h := setup(t, sim.Config{MonthlyQuota: 2})
	create := `{"name":"Q","owner":"u0","useridlist":["u0"]}`
	for i := range 2 {
		if r := h.post("chat/create", create); code(r) != 0 {
			t.Fatalf("call %d within the quota: %v", i+1, r)
		}
	}
	h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", "") // not counted, not refused
	if r := h.post("chat/create", create); code(r) != 90020 {
		t.Fatalf("old family past the quota: %v, want errcode 90020", r)
	}
	if r := h.v1("v1.0/im/group/create", `{"name":"Q","owner":"u0","useridlist":["u0"]}`); r["http_status"] != float64(403) || r["Code"] != "Forbidden.AccessDenied.ApiCountLimitForOrg" {
		t.Fatalf("v1.0 past the quota: %v, want 403 Forbidden.AccessDenied.ApiCountLimitForOrg", r)
	}
	if st := h.s.Stats(); st.QuotaUsed != 2 || st.QuotaRefused != 2 || st.GroupsCreated != 2 {
		t.Fatalf("stats: %+v", st)
	}
	h.s.SetMonthlyQuota(1)
	if r := h.post("chat/create", create); code(r) != 0 {
		t.Fatalf("after a new quota: %v", r)
	}
	if r := h.post("chat/create", create); code(r) != 90020 {
		t.Fatalf("past the new quota: %v", r)
	}
}

// A ban refuses every API, tokens included, in DingTalk's JSON shape, and ends.
func TestBan(t *testing.T) {
	clock := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	h := setup(t, sim.Config{Now: func() time.Time { return clock }})
	h.s.Ban(1500 * time.Millisecond)
	for _, r := range []map[string]any{
		h.post("chat/create", `{"name":"B","owner":"u0","useridlist":["u0"]}`),
		h.v1("v1.0/im/group/create", `{"name":"B","owner":"u0","useridlist":["u0"]}`),
		h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", ""),
	} {
		if r["status"] != float64(1111) || r["wait"] != float64(2) || r["http_status"] != float64(200) {
			t.Fatalf("during a ban: %v, want status 1111, wait 2", r)
		}
	}
	clock = clock.Add(1500 * time.Millisecond)
	if r := h.post("chat/create", `{"name":"B","owner":"u0","useridlist":["u0"]}`); code(r) != 0 {
		t.Fatalf("after the ban: %v", r)
	}
	if st := h.s.Stats(); st.Banned != 3 || st.GroupsCreated != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// The app's own configuration refused: a reset secret, a revoked
// permission, an IP off the allowlist, each in both families' shapes.
func TestConfigurationRefusals(t *testing.T) {
	h := setup(t, sim.Config{})
	v1 := func(api, body string) map[string]any {
		req, _ := http.NewRequest("POST", h.url+"/"+api, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-acs-dingtalk-access-token", h.token)
		return h.send(req)
	}
	create := `{"name":"n","owner":"u1","useridlist":["u1"]}`

	h.s.RevokePermission("chat/create")
	if r := h.post("chat/create", create); code(r) != 43007 {
		t.Errorf("revoked chat/create: errcode %d, want 43007", code(r))
	}
	h.s.RevokePermission("v1.0/im/group/create")
	if r := v1("v1.0/im/group/create", `{"name":"n","owner":"u1","useridlist":["u1"]}`); r["http_status"] != float64(403) ||
		r["Code"] != "Forbidden.AccessDenied.AccessTokenPermissionDenied" {
		t.Errorf("revoked v1 create: %v, want 403 AccessTokenPermissionDenied", r)
	}
	h.s.GrantPermission("chat/create")
	if r := h.post("chat/create", create); code(r) != 0 {
		t.Errorf("granted again: %v", r)
	}

	h.s.DenyIP(true)
	if r := h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", ""); code(r) != 60020 {
		t.Errorf("IP denied, gettoken: errcode %d, want 60020", code(r))
	}
	if r := v1("v1.0/oauth2/accessToken", `{"appKey":"key","appSecret":"secret"}`); r["Code"] != "Forbidden.AccessDenied.IpNotInWhiteList" {
		t.Errorf("IP denied, v1 token: %v, want 403 IpNotInWhiteList", r)
	}
	h.s.DenyIP(false)

	h.s.ResetSecret("new-secret")
	if r := h.do("GET", "/gettoken?appkey=key&appsecret=secret", "", ""); code(r) != 40089 {
		t.Errorf("after a reset, the old secret: errcode %d, want 40089", code(r))
	}
	if r := h.do("GET", "/gettoken?appkey=key&appsecret=new-secret", "", ""); r["access_token"] == nil {
		t.Errorf("after a reset, the new secret: %v", r)
	}
	if got := h.s.Stats().ConfigRefused; got != 4 {
		t.Errorf("ConfigRefused %d, want 4", got)
	}
}
