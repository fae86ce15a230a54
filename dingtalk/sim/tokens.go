package sim

import (
	"encoding/json"
	"errors"
	"net/http"
)

// getToken answers the old family's GET /gettoken: the current token while
// it is valid, a new one after.
func (s *Server) getToken(r *http.Request, _ map[string]json.RawMessage) answer {
	q := r.URL.Query()
	token, left, good := s.issue(q.Get("appkey"), q.Get("appsecret"))
	if !good {
		return fail(badCredentials, "不合法的appKey或appSecret的组合")
	}
	return ok(map[string]any{"access_token": token, "expires_in": left})
}

// accessToken answers v1.0's POST /v1.0/oauth2/accessToken with the same token.
func (s *Server) accessToken(_ *http.Request, body map[string]json.RawMessage) answer {
	var key, secret string
	if err := errors.Join(field(body, "appKey", &key), field(body, "appSecret", &secret)); err != nil {
		return fail(badParameter, err.Error())
	}
	token, left, good := s.issue(key, secret)
	if !good {
		return fail(badCredentials, "无效的clientId或者clientSecret")
	}
	return ok(map[string]any{"accessToken": token, "expireIn": left})
}

// issue returns the app's token and its remaining seconds, if the credentials are right.
func (s *Server) issue(key, secret string) (string, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" || secret == "" ||
		(s.cfg.AppKey != "" && key != s.cfg.AppKey) ||
		(s.cfg.AppSecret != "" && secret != s.cfg.AppSecret) {
		return "", 0, false
	}
	now := s.now()
	if s.token == "" || !now.Before(s.expiry) {
		if s.token != "" {
			s.old[s.token] = true
		}
		s.token = randomHex(16)
		s.expiry = now.Add(s.cfg.TokenLifetime)
		s.stats.TokensIssued++
	}
	return s.token, int(s.expiry.Sub(now).Seconds()), true
}

// ResetSecret makes secret the only one the token endpoints accept, as
// resetting the app secret in DingTalk's console does. Tokens already
// issued stay valid until they expire (what DingTalk does with them is
// undocumented; either way a worker with the old secret fails at its next
// token fetch, which is what this models).
func (s *Server) ResetSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.AppSecret = secret
}

// tokenHeader is where v1.0 takes the token; the old family takes the
// access_token query parameter and nothing else.
const tokenHeader = "x-acs-dingtalk-access-token"

// checkToken refuses a call whose token is missing, misplaced, unknown or expired.
func (s *Server) checkToken(r *http.Request, rt route) answer {
	tok := r.URL.Query().Get("access_token")
	if rt.v1 {
		tok = r.Header.Get(tokenHeader)
		if tok == "" {
			return fail(tokenMissing, "缺少参数 x-acs-dingtalk-access-token（v1.0 不接受 URL 中的 access_token）")
		}
	} else if tok == "" && r.Header.Get(tokenHeader) != "" {
		return answer{errcode: 88, subCode: "40014", msg: "鉴权异常: 缺少access_token参数"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case tok != "" && tok == s.token && s.now().Before(s.expiry):
		return answer{}
	case tok != "" && (tok == s.token || s.old[tok]):
		return fail(tokenExpired, "access_token过期")
	default:
		return fail(tokenInvalid, "不合法的access_token")
	}
}
