package sim

import (
	"slices"
)

// What people do to groups in the DingTalk app, outside the API: no call
// is counted, and each change raises DingTalk's event (chat_add_member,
// chat_remove_member, chat_quit, chat_update_owner, chat_update_title,
// chat_disband) for Stream mode to push, unless SilenceHands was called.
// Each takes a group by chat id or open conversation id and reports whether
// the change happened: DingTalk's client refuses a change to a group that
// is gone or disbanded, the owner's quitting, anyone's removing the owner,
// and an owner who is not a member.

// SilenceHands makes by-hand changes raise no events (silent true) or
// raise them again (false): the drift `provisioner reconcile` must find.
func (s *Server) SilenceHands(silent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = silent
}

// UnionID is the unionId DingTalk gives the simulator's user userID.
func UnionID(userID string) string { return "union-" + userID }

// AddByHand adds userID to a group as its owner would in the app.
func (s *Server) AddByHand(id, userID string) bool {
	return s.byHand(id, func(g *Group) (string, map[string]any, bool) {
		if slices.Contains(g.Members, userID) {
			return "", nil, false
		}
		g.Members = append(g.Members, userID)
		return "chat_add_member", members(g, g.Owner, userID), true
	})
}

// RemoveByHand takes userID out of a group as its owner would in the app.
func (s *Server) RemoveByHand(id, userID string) bool {
	return s.byHand(id, func(g *Group) (string, map[string]any, bool) {
		if userID == g.Owner || !slices.Contains(g.Members, userID) {
			return "", nil, false
		}
		g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return m == userID })
		return "chat_remove_member", members(g, g.Owner, userID), true
	})
}

// QuitByHand is userID leaving a group.
func (s *Server) QuitByHand(id, userID string) bool {
	return s.byHand(id, func(g *Group) (string, map[string]any, bool) {
		if userID == g.Owner || !slices.Contains(g.Members, userID) {
			return "", nil, false
		}
		g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return m == userID })
		return "chat_quit", members(g, userID, userID), true
	})
}

// SetOwnerByHand is the owner handing the group to userID, a member. Its
// event, like DingTalk's, carries neither chatId nor operator: only the
// open conversation id and the operator's unionId.
func (s *Server) SetOwnerByHand(id, userID string) bool {
	return s.byHand(id, func(g *Group) (string, map[string]any, bool) {
		if userID == g.Owner || !slices.Contains(g.Members, userID) {
			return "", nil, false
		}
		old := g.Owner
		g.Owner = userID
		return "chat_update_owner", map[string]any{
			"openConversationId": g.OpenConversationID, "operatorUnionId": UnionID(old), "owner": userID,
		}, true
	})
}

// RenameByHand is the owner renaming the group.
func (s *Server) RenameByHand(id, name string) bool {
	return s.byHand(id, func(g *Group) (string, map[string]any, bool) {
		if name == "" || name == g.Name {
			return "", nil, false
		}
		g.Name = name
		d := operated(g, g.Owner)
		d["title"] = name
		return "chat_update_title", d, true
	})
}

// DisbandByHand is the owner disbanding the group: every later call on it
// is refused, and reading it says it is dissolved.
func (s *Server) DisbandByHand(id string) bool {
	return s.byHand(id, func(g *Group) (string, map[string]any, bool) {
		g.Disbanded = true
		return "chat_disband", operated(g, g.Owner), true
	})
}

// byHand applies change to a live group and raises its event.
func (s *Server) byHand(id string, change func(*Group) (typ string, data map[string]any, ok bool)) bool {
	s.mu.Lock()
	g, found := s.find(id)
	if !found || g.Disbanded {
		s.mu.Unlock()
		return false
	}
	typ, data, ok := change(g)
	silent := s.silent
	s.mu.Unlock()
	if ok && !silent {
		s.hub.emit(typ, data)
	}
	return ok
}

// operated is an event's group and operator fields.
func operated(g *Group, operator string) map[string]any {
	return map[string]any{"chatId": g.ChatID, "openConversationId": g.OpenConversationID,
		"operator": operator, "operatorUnionId": UnionID(operator)}
}

// members is a member event's fields: the group, the operator and who.
func members(g *Group, operator string, who ...string) map[string]any {
	d := operated(g, operator)
	unions := make([]string, len(who))
	for i, u := range who {
		unions[i] = UnionID(u)
	}
	d["userId"], d["unionId"] = who, unions
	return d
}
