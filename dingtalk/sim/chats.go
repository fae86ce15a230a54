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
	"unicode/utf8"
)

// settingNames are chat/create's and chat/update's numeric flags.
var settingNames = []string{"showHistoryType", "searchable", "validationType", "mentionAllAuthority", "managementType", "chatBannedType"}

func (s *Server) createChat(_ *http.Request, body map[string]json.RawMessage) answer {
	var name, owner, icon string
	var users []string
	for _, f := range []struct {
		key string
		dst any
	}{{"name", &name}, {"owner", &owner}, {"useridlist", &users}, {"icon", &icon}} {
		if err := field(body, f.key, f.dst); err != nil {
			return fail(codeBadParameter, err.Error())
		}
	}
	settings, err := readSettings(body)
	if err != nil {
		return fail(codeBadParameter, err.Error())
	}
	switch n := utf8.RuneCountInString(name); {
	case n < 1 || n > maxNameRunes:
		return fail(codeBadParameter, fmt.Sprintf("群名称长度须为1~20个字符: %d", n))
	case owner == "":
		return fail(codeBadParameter, "owner不能为空")
	case len(users) == 0:
		return fail(codeBadParameter, "useridlist不能为空")
	case len(users) > maxUsersPerCall:
		return fail(codeTooManyInCall, fmt.Sprintf("每次最多支持%d人", maxUsersPerCall))
	case !slices.Contains(users, owner):
		return fail(codeBadParameter, "群主必须为会话useridlist的成员之一")
	}
	if u := s.firstUnknown(users); u != "" {
		return fail(codeInvalidUser, "无效的USERID: "+u)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	members := dedupe(users)
	key := groupKey(name, owner, members)
	if s.seen[key] {
		s.stats.Duplicates++
	}
	s.seen[key] = true
	g := &Group{
		ChatID: "chat" + randomHex(16), OpenConversationID: "cid" + randomHex(12),
		Name: name, Owner: owner, Members: members, Settings: settings, Icon: icon, CreatedAt: s.now(),
	}
	s.groups[g.ChatID] = g
	s.order = append(s.order, g.ChatID)
	s.stats.GroupsCreated++
	return ok(map[string]any{"chatid": g.ChatID, "openConversationId": g.OpenConversationID, "conversationTag": 2})
}

func (s *Server) updateChat(_ *http.Request, body map[string]json.RawMessage) answer {
	var chatID, name, owner, icon string
	var add, del []string
	for _, f := range []struct {
		key string
		dst any
	}{{"chatid", &chatID}, {"name", &name}, {"owner", &owner}, {"icon", &icon}, {"add_useridlist", &add}, {"del_useridlist", &del}} {
		if err := field(body, f.key, f.dst); err != nil {
			return fail(codeBadParameter, err.Error())
		}
	}
	settings, err := readSettings(body)
	if err != nil {
		return fail(codeBadParameter, err.Error())
	}
	if chatID == "" {
		return fail(codeChatIDMissing, "chatid不能为空")
	}
	if n := utf8.RuneCountInString(name); n > maxNameRunes {
		return fail(codeBadParameter, fmt.Sprintf("群名称长度须为1~20个字符: %d", n))
	}
	if len(add) > maxUsersPerCall {
		return fail(codeTooManyInCall, fmt.Sprintf("每次最多支持%d人", maxUsersPerCall))
	}
	for _, u := range add {
		if slices.Contains(del, u) {
			return fail(codeListsOverlap, "add_useridlist和del_useridlist重叠: "+u)
		}
	}
	if u := s.firstUnknown(append(add, owner)); u != "" {
		return fail(codeInvalidUser, "无效的USERID: "+u)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	g, found := s.groups[chatID]
	if !found {
		return fail(codeInvalidChat, "不合法的chatid")
	}
	members := slices.Clone(g.Members)
	for _, u := range add {
		if !slices.Contains(members, u) {
			members = append(members, u)
		}
	}
	members = slices.DeleteFunc(members, func(u string) bool { return slices.Contains(del, u) })
	newOwner := g.Owner
	if owner != "" {
		newOwner = owner
	}
	switch {
	case len(members) > maxMembers:
		return fail(codeGroupTooLarge, fmt.Sprintf("群人数上限为%d", maxMembers))
	case !slices.Contains(members, newOwner):
		return fail(codeBadParameter, "群主必须为群成员")
	}
	g.Members, g.Owner = members, newOwner
	if name != "" {
		g.Name = name
	}
	if icon != "" {
		g.Icon = icon
	}
	for k, v := range settings {
		g.Settings[k] = v
	}
	return ok(map[string]any{})
}

func (s *Server) getChat(r *http.Request, _ map[string]json.RawMessage) answer {
	chatID := r.URL.Query().Get("chatid")
	if chatID == "" {
		return fail(codeChatIDMissing, "chatid不能为空")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, found := s.groups[chatID]
	if !found {
		return fail(codeInvalidChat, "不合法的chatid")
	}
	info := map[string]any{
		"name": g.Name, "owner": g.Owner, "useridlist": g.Members,
		"conversationTag": 2, "icon": g.Icon, "status": 1,
	}
	for _, k := range settingNames {
		info[k] = g.Settings[k]
	}
	return ok(map[string]any{"chat_info": info})
}

func (s *Server) qrCode(_ *http.Request, body map[string]json.RawMessage) answer {
	var chatID, userID string
	if err := errors.Join(field(body, "chatid", &chatID), field(body, "userid", &userID)); err != nil {
		return fail(codeBadParameter, err.Error())
	}
	if userID == "" || s.firstUnknown([]string{userID}) != "" {
		return fail(codeInvalidUserQR, "不合法的userid")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, found := s.groups[chatID]
	if !found {
		return fail(codeInvalidChatQR, "无效的chatId")
	}
	if !slices.Contains(g.Members, userID) {
		return fail(codeUserNotInGroup, "用户不在此群中")
	}
	link := "https://qr.dingtalk.com/action/joingroup?code=v1," + g.OpenConversationID + "," + url.QueryEscape(userID) + "&_dt_no_comment=1&origin=11"
	return ok(map[string]any{"result": link, "success": true})
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

func readSettings(body map[string]json.RawMessage) (map[string]int, error) {
	out := map[string]int{}
	for _, k := range settingNames {
		var v *int
		if err := field(body, k, &v); err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		if *v != 0 && *v != 1 {
			return nil, fmt.Errorf("参数%s只能为0或1", k)
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
