package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"unicode/utf8"
)

// sceneSettingNames are the scene groups' management_options, by camelCase name.
var sceneSettingNames = map[string]string{
	"showHistoryType": "show_history_type", "searchable": "searchable", "validationType": "validation_type",
	"mentionAllAuthority": "mention_all_authority", "managementType": "management_type", "chatBannedType": "chat_banned_type",
}

// createSceneGroup serves /v1.0/im/sceneGroup/create.
func (s *Server) createSceneGroup(_ *http.Request, body map[string]json.RawMessage) answer {
	var title, template, owner, uuid, icon string
	var users []string
	var opts map[string]json.RawMessage
	for _, f := range []struct {
		key string
		dst any
	}{{"title", &title}, {"template_id", &template}, {"owner_user_id", &owner}, {"user_ids", &users},
		{"uuid", &uuid}, {"icon", &icon}, {"management_options", &opts}} {
		if err := field(body, f.key, f.dst); err != nil {
			return fail(badParameter, err.Error())
		}
	}
	settings, err := readSettings(opts, sceneSettingNames)
	if err != nil {
		return fail(badParameter, err.Error())
	}
	switch n := utf8.RuneCountInString(title); {
	case n < 1 || n > maxSceneTitleRunes:
		return fail(badParameter, fmt.Sprintf("群名称最长不超过30字符: %d", n))
	case template == "":
		return fail(badParameter, "template_id不能为空")
	case !slices.Contains(s.cfg.SceneTemplates, template):
		return fail(templateNotFound, "群模板不存在或者已下线")
	case owner == "":
		return fail(badParameter, "owner_user_id不能为空")
	case len(users) > maxSceneUsersCreate:
		return fail(groupTooLarge, "群成员数量超出限制")
	}
	if u := s.firstUnknown(append([]string{owner}, users...)); u != "" {
		return fail(unknownUser, "不存在的员工: "+u)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if first, seen := s.byUUID[uuid]; uuid != "" && seen {
		s.stats.UUIDRepeats++
		if s.cfg.RefuseRepeatedUUID {
			return fail(badParameter, "uuid重复: 该业务ID已建过群")
		}
		return ok(map[string]any{"open_conversation_id": first.OpenConversationID, "chat_id": first.ChatID})
	}
	members := dedupe(append([]string{owner}, users...))
	g := s.addGroup(&Group{Name: title, Owner: owner, Members: members, Settings: settings, Icon: icon, TemplateID: template, UUID: uuid})
	if uuid != "" {
		s.byUUID[uuid] = g
	}
	return ok(map[string]any{"open_conversation_id": g.OpenConversationID, "chat_id": g.ChatID})
}

// addSceneMembers serves /v1.0/im/sceneGroup/member/add.
func (s *Server) addSceneMembers(_ *http.Request, body map[string]json.RawMessage) answer {
	return s.sceneMemberChange(body, true)
}

// removeSceneMembers serves /v1.0/im/sceneGroup/member/delete; the owner
// cannot be removed.
func (s *Server) removeSceneMembers(_ *http.Request, body map[string]json.RawMessage) answer {
	return s.sceneMemberChange(body, false)
}

// sceneMemberChange adds or removes user_ids: the two calls take the same
// body and the same limits.
func (s *Server) sceneMemberChange(body map[string]json.RawMessage, add bool) answer {
	var cid string
	var users []string
	if err := errors.Join(field(body, "open_conversation_id", &cid), field(body, "user_ids", &users)); err != nil {
		return fail(badParameter, err.Error())
	}
	switch {
	case cid == "":
		return fail(badParameter, "open_conversation_id不能为空")
	case len(users) == 0:
		return fail(badParameter, "user_ids不能为空")
	case len(users) > maxSceneUsersAdd:
		return fail(tooManyInCall, fmt.Sprintf("每次最多%d人", maxSceneUsersAdd))
	}
	if u := s.firstUnknown(users); add && u != "" {
		return fail(unknownUser, "不存在的员工: "+u)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, refusal := s.sceneGroup(cid)
	if refusal.refused() {
		return refusal
	}
	var members []string
	if add {
		members, refusal = s.withMembers(g, users)
	} else if slices.Contains(users, g.Owner) {
		return fail(badParameter, "不能移除群主: "+g.Owner)
	} else {
		members, refusal = s.withoutMembers(g.Members, users)
	}
	if refusal.refused() {
		return refusal
	}
	g.Members = members
	return ok(map[string]any{"success": true})
}

// querySceneGroup serves /v1.0/im/sceneGroups/query: the group and its join link.
func (s *Server) querySceneGroup(_ *http.Request, body map[string]json.RawMessage) answer {
	var cid string
	if err := field(body, "openConversationId", &cid); err != nil || cid == "" {
		return fail(badParameter, "openConversationId不能为空")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, found := s.byCID[cid]
	if !found || g.TemplateID == "" {
		return fail(unknownChat, "群不存在")
	}
	status := 1
	if g.Disbanded {
		status = 2
	}
	return ok(map[string]any{
		"openConversationId": g.OpenConversationID, "title": g.Name, "ownerUserId": g.Owner,
		"templateId": g.TemplateID, "icon": g.Icon, "groupUrl": joinLink(g, g.Owner), "status": status,
	})
}

// sceneMembers serves /v1.0/im/sceneGroups/members/batchQuery, a page at a time.
func (s *Server) sceneMembers(_ *http.Request, body map[string]json.RawMessage) answer {
	var cid, next string
	var most int
	if err := errors.Join(field(body, "openConversationId", &cid), field(body, "maxResults", &most), field(body, "nextToken", &next)); err != nil {
		return fail(badParameter, err.Error())
	}
	if cid == "" || most < 1 || most > maxMembers {
		return fail(badParameter, "openConversationId不能为空, maxResults须为1~1000")
	}
	from := 0
	if next != "" {
		n, err := strconv.Atoi(next)
		if err != nil || n < 0 {
			return fail(badParameter, "nextToken不合法")
		}
		from = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, refusal := s.sceneGroup(cid)
	if refusal.refused() {
		return refusal
	}
	from = min(from, len(g.Members))
	to := min(from+most, len(g.Members))
	out := map[string]any{"memberUserIds": slices.Clone(g.Members[from:to]), "hasMore": to < len(g.Members)}
	if to < len(g.Members) {
		out["nextToken"] = strconv.Itoa(to)
	}
	return ok(out)
}

// sceneGroup finds a live scene group by open conversation id, or says why
// not: unknown, not a scene group, or disbanded. s.mu must be held.
func (s *Server) sceneGroup(cid string) (*Group, answer) {
	g, found := s.byCID[cid]
	switch {
	case !found || g.TemplateID == "":
		return nil, fail(unknownChat, "群不存在")
	case g.Disbanded:
		return nil, fail(unknownChat, "群已解散")
	}
	return g, answer{}
}

// updateSceneGroup serves /v1.0/im/sceneGroup/update: title, owner, icon
// and management options; the new owner must already be a member.
func (s *Server) updateSceneGroup(_ *http.Request, body map[string]json.RawMessage) answer {
	var cid, title, owner, icon string
	var opts map[string]json.RawMessage
	if err := errors.Join(field(body, "open_conversation_id", &cid), field(body, "title", &title), field(body, "owner_user_id", &owner),
		field(body, "icon", &icon), field(body, "management_options", &opts)); err != nil {
		return fail(badParameter, err.Error())
	}
	settings, err := readSettings(opts, sceneSettingNames)
	if err != nil {
		return fail(badParameter, err.Error())
	}
	switch n := utf8.RuneCountInString(title); {
	case cid == "":
		return fail(badParameter, "open_conversation_id不能为空")
	case n > maxSceneTitleRunes:
		return fail(badParameter, fmt.Sprintf("群名称最长不超过30字符: %d", n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, refusal := s.sceneGroup(cid)
	if refusal.refused() {
		return refusal
	}
	if owner != "" && !slices.Contains(g.Members, owner) {
		return fail(badParameter, "新群主必须是群成员: "+owner)
	}
	g.change(title, owner, icon, settings)
	return ok(map[string]any{"success": true})
}

// disbandSceneGroup serves /v1.0/im/chat/scenegroup/disband (the official
// SDK's DsbandOpenSceneGroup).
func (s *Server) disbandSceneGroup(_ *http.Request, body map[string]json.RawMessage) answer {
	var cid string
	if err := field(body, "openConversationId", &cid); err != nil || cid == "" {
		return fail(badParameter, "openConversationId不能为空")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, refusal := s.sceneGroup(cid)
	if refusal.refused() {
		return refusal
	}
	g.Disbanded = true
	return ok(map[string]any{"success": true})
}
