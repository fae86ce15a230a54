package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// DingTalk's limits the simulator enforces.
const (
	maxNameRunes        = 20
	maxUsersPerCall     = 40
	maxMembers          = 1000
	maxSceneTitleRunes  = 30
	maxSceneUsersCreate = 999
	maxSceneUsersAdd    = 100
)

// Old-family codes of qrcode/get's own.
const (
	codeInvalidUserQR  = 40003
	codeInvalidChatQR  = 34001
	codeUserNotInGroup = 60124
)

// settingNames are the groups' numeric flags, in camelCase as chat/create,
// v1.0 group/create and sceneGroups/query spell them.
var settingNames = []string{"showHistoryType", "searchable", "validationType", "mentionAllAuthority", "managementType", "chatBannedType"}

func isV1(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1.0/") }

// createChat serves chat/create and v1.0 group/create: the same fields, the
// settings flat in the old family and under managementOptions in v1.0.
func (s *Server) createChat(r *http.Request, body map[string]json.RawMessage) answer {
	var name, owner, icon string
	var users []string
	for _, f := range []struct {
		key string
		dst any
	}{{"name", &name}, {"owner", &owner}, {"useridlist", &users}, {"icon", &icon}} {
		if err := field(body, f.key, f.dst); err != nil {
			return fail(badParameter, err.Error())
		}
	}
	settings, err := chatSettings(r, body)
	if err != nil {
		return fail(badParameter, err.Error())
	}
	switch n := utf8.RuneCountInString(name); {
	case n < 1 || n > maxNameRunes:
		return fail(badParameter, fmt.Sprintf("群名称长度须为1~20个字符: %d", n))
	case owner == "":
		return fail(badParameter, "owner不能为空")
	case len(users) == 0:
		return fail(badParameter, "useridlist不能为空")
	case len(users) > maxUsersPerCall:
		return fail(tooManyInCall, fmt.Sprintf("每次最多支持%d人", maxUsersPerCall))
	case !slices.Contains(users, owner):
		return fail(badParameter, "群主必须为会话useridlist的成员之一")
	}
	if u := s.firstUnknown(users); u != "" {
		return fail(unknownUser, "无效的USERID: "+u)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.addGroup(&Group{Name: name, Owner: owner, Members: dedupe(users), Settings: settings, Icon: icon})
	return ok(map[string]any{"chatid": g.ChatID, "openConversationId": g.OpenConversationID, "conversationTag": 2})
}

// addGroup stores a new group, counting duplicates; s.mu must be held.
func (s *Server) addGroup(g *Group) *Group {
	key := groupKey(g.Name, g.Owner, g.Members)
	if s.seen[key] {
		s.stats.Duplicates++
	}
	s.seen[key] = true
	g.ChatID, g.OpenConversationID, g.CreatedAt = "chat"+randomHex(16), "cid"+randomHex(12), s.now()
	s.groups[g.ChatID] = g
	s.byCID[g.OpenConversationID] = g
	s.order = append(s.order, g.ChatID)
	s.stats.GroupsCreated++
	return g
}

// updateChat serves chat/update and v1.0 group/update.
func (s *Server) updateChat(r *http.Request, body map[string]json.RawMessage) answer {
	var chatID, name, owner, icon string
	var add, del []string
	for _, f := range []struct {
		key string
		dst any
	}{{"chatid", &chatID}, {"name", &name}, {"owner", &owner}, {"icon", &icon}, {"add_useridlist", &add}, {"del_useridlist", &del}} {
		if err := field(body, f.key, f.dst); err != nil {
			return fail(badParameter, err.Error())
		}
	}
	settings, err := chatSettings(r, body)
	if err != nil {
		return fail(badParameter, err.Error())
	}
	if chatID == "" {
		return fail(chatIDMissing, "chatid不能为空")
	}
	if n := utf8.RuneCountInString(name); n > maxNameRunes {
		return fail(badParameter, fmt.Sprintf("群名称长度须为1~20个字符: %d", n))
	}
	if len(add) > maxUsersPerCall {
		return fail(tooManyInCall, fmt.Sprintf("每次最多支持%d人", maxUsersPerCall))
	}
	for _, u := range add {
		if slices.Contains(del, u) {
			return fail(listsOverlap, "add_useridlist和del_useridlist重叠: "+u)
		}
	}
	if u := s.firstUnknown(append(add, owner)); u != "" {
		return fail(unknownUser, "无效的USERID: "+u)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	g, found := s.groups[chatID]
	if !found {
		return fail(unknownChat, "不合法的chatid")
	}
	if g.Disbanded {
		return fail(unknownChat, "群已解散")
	}
	if owner != "" && owner != g.Owner && s.cfg.RefuseOwnerAddedInSameCall && !slices.Contains(g.Members, owner) {
		return fail(badParameter, "新群主必须已是群成员: "+owner)
	}
	members, refusal := s.withMembers(g, add)
	if refusal.refused() {
		return refusal
	}
	members, refusal = s.withoutMembers(members, del)
	if refusal.refused() {
		return refusal
	}
	newOwner := g.Owner
	if owner != "" {
		newOwner = owner
	}
	if !slices.Contains(members, newOwner) {
		return fail(badParameter, "群主必须为群成员")
	}
	g.Members = members
	g.change(name, newOwner, icon, settings)
	if isV1(r) {
		return ok(map[string]any{"success": true})
	}
	return ok(map[string]any{})
}

// withMembers returns g's members with add appended, or the refusal an add
// gets: a member already in the group (if so configured), or the group
// growing past its limit. s.mu must be held.
func (s *Server) withMembers(g *Group, add []string) ([]string, answer) {
	members := slices.Clone(g.Members)
	for _, u := range add {
		switch {
		case !slices.Contains(members, u):
			members = append(members, u)
		case s.cfg.RefuseExistingMembers:
			return nil, fail(badParameter, "成员已在群中: "+u)
		}
	}
	if len(members) > maxMembers {
		return nil, fail(groupTooLarge, fmt.Sprintf("群人数上限为%d", maxMembers))
	}
	return members, answer{}
}

// change renames g, gives it a new owner and icon, and sets flags; empty
// values are left as they are. s.mu must be held.
func (g *Group) change(name, owner, icon string, settings map[string]int) {
	if name != "" {
		g.Name = name
	}
	if owner != "" {
		g.Owner = owner
	}
	if icon != "" {
		g.Icon = icon
	}
	for k, v := range settings {
		g.Settings[k] = v
	}
}

// withoutMembers returns members less del, or the refusal a removal of
// someone absent gets (if so configured). s.mu must be held.
func (s *Server) withoutMembers(members, del []string) ([]string, answer) {
	for _, u := range del {
		if s.cfg.RefuseAbsentRemovals && !slices.Contains(members, u) {
			return nil, fail(notInGroup, "用户不在群中: "+u)
		}
	}
	return slices.DeleteFunc(slices.Clone(members), func(u string) bool { return slices.Contains(del, u) }), answer{}
}

func (s *Server) getChat(r *http.Request, _ map[string]json.RawMessage) answer {
	chatID := r.URL.Query().Get("chatid")
	if chatID == "" {
		return fail(chatIDMissing, "chatid不能为空")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, found := s.groups[chatID]
	if !found {
		return fail(unknownChat, "不合法的chatid")
	}
	info := map[string]any{
		"name": g.Name, "owner": g.Owner, "useridlist": g.Members,
		"conversationTag": 2, "icon": g.Icon, "status": 1,
	}
	if g.Disbanded {
		info["status"] = 2 // dissolved
	}
	for _, k := range settingNames {
		info[k] = g.Settings[k]
	}
	return ok(map[string]any{"chat_info": info})
}

func (s *Server) qrCode(_ *http.Request, body map[string]json.RawMessage) answer {
	var chatID, userID string
	if err := errors.Join(field(body, "chatid", &chatID), field(body, "userid", &userID)); err != nil {
		return fail(badParameter, err.Error())
	}
	if userID == "" || s.firstUnknown([]string{userID}) != "" {
		return answer{errcode: codeInvalidUserQR, msg: "不合法的userid"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, found := s.groups[chatID]
	if !found {
		return answer{errcode: codeInvalidChatQR, msg: "无效的chatId"}
	}
	if !slices.Contains(g.Members, userID) {
		return answer{errcode: codeUserNotInGroup, msg: "用户不在此群中"}
	}
	return ok(map[string]any{"result": joinLink(g, userID), "success": true})
}

// joinLink is a group's join link as shared by userID: stable per group and sharer.
func joinLink(g *Group, userID string) string {
	return "https://qr.dingtalk.com/action/joingroup?code=v1," + g.OpenConversationID + "," + url.QueryEscape(userID) + "&_dt_no_comment=1&origin=11"
}

func (s *Server) firstUnknown(users []string) string {
	for _, u := range users {
		if s.unknown[u] {
			return u
		}
	}
	return ""
}

// readBody reads a JSON object, or the form encoding the topapi family also accepts.
func readBody(r *http.Request) (map[string]json.RawMessage, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(data))
		if err != nil {
			return nil, err
		}
		out := map[string]json.RawMessage{}
		for k := range form {
			b, _ := json.Marshal(form.Get(k))
			out[k] = b
		}
		return out, nil
	}
	out := map[string]json.RawMessage{}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, errors.New("请求体不是合法的JSON")
	}
	return out, nil
}

// field decodes body[key] into dst when present.
func field(body map[string]json.RawMessage, key string, dst any) error {
	raw, ok := body[key]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("参数%s类型错误", key)
	}
	return nil
}

// chatSettings reads a plain group's flags: flat in the old family, under
// managementOptions in v1.0.
func chatSettings(r *http.Request, body map[string]json.RawMessage) (map[string]int, error) {
	if !isV1(r) {
		return readSettings(body, nil)
	}
	var opts map[string]json.RawMessage
	if err := field(body, "managementOptions", &opts); err != nil {
		return nil, err
	}
	return readSettings(opts, nil)
}

// readSettings reads the 0/1 flags from body, under the names rename gives
// (nil: the camelCase names themselves), keyed by their camelCase names.
func readSettings(body map[string]json.RawMessage, rename map[string]string) (map[string]int, error) {
	out := map[string]int{}
	for _, k := range settingNames {
		key := k
		if rename != nil {
			key = rename[k]
		}
		var v *int
		if err := field(body, key, &v); err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		if *v != 0 && *v != 1 {
			return nil, fmt.Errorf("参数%s只能为0或1", key)
		}
		out[k] = *v
	}
	return out, nil
}

func dedupe(users []string) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}
