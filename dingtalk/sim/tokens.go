package sim

import (
	"encoding/json"
	"net/http"
)

// DingTalk's codes the simulator answers with.
const (
	codeInvalidToken   = 40014
	codeTokenExpired   = 42001
	codeInvalidAppKey  = 40089
	codeBadParameter   = 400002
	codeInvalidUser    = 33012 // chat/create, chat/update
	codeInvalidUserQR  = 40003 // topapi/chat/qrcode/get
	codeInvalidChat    = 40016 // chat/get, chat/update
	codeInvalidChatQR  = 34001 // topapi/chat/qrcode/get
	codeChatIDMissing  = 49000
	codeListsOverlap   = 49004
	codeGroupTooLarge  = 49005
	codeTooManyInCall  = 49011
	codeUserNotInGroup = 60124
	maxNameRunes       = 20
	maxUsersPerCall    = 40
	maxMembers         = 1000
)

// getToken answers GET /gettoken: the current token while it is valid, a new one after.
func (s *Server) getToken(r *http.Request, _ map[string]json.RawMessage) answer {
	q := r.URL.Query()
	key, secret := q.Get("appkey"), q.Get("appsecret")
	if key == "" || secret == "" ||
		(s.cfg.AppKey != "" && key != s.cfg.AppKey) ||
		(s.cfg.AppSecret != "" && secret != s.cfg.AppSecret) {
		return fail(codeInvalidAppKey, "不合法的appKey或appSecret的组合")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.token == "" || !now.Before(s.expiry) {
		if s.token != "" {
			s.old[s.token] = true
		}
		s.token = randomHex(16)
		s.expiry = now.Add(s.cfg.TokenLifetime)
		s.stats.TokensIssued++
	}
	return ok(map[string]any{
		"access_token": s.token,
		"expires_in":   int(s.expiry.Sub(now).Seconds()),
	})
}

// checkToken says whether a call's access_token is good: 0, or a code and message.
func (s *Server) checkToken(tok string) (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case tok != "" && tok == s.token && s.now().Before(s.expiry):
		return 0, ""
	case tok != "" && (tok == s.token || s.old[tok]):
		return codeTokenExpired, "access_token过期"
	default:
		return codeInvalidToken, "不合法的access_token"
	}
}
