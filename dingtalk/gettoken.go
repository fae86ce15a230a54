package dingtalk

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// appTokenSource fetches tokens from GET /gettoken with the app's key and secret.
type appTokenSource struct {
	c           *Client
	key, secret string
	now         func() time.Time
}

type tokenReply struct {
	reply
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// Token asks DingTalk for the app's token. DingTalk answers the same token
// while it is valid, so a repeated call is harmless but counts against the
// app's throttling: callers go through a TokenCache.
func (s *appTokenSource) Token(ctx context.Context) (*Token, error) {
	var r tokenReply
	cl := call{api: "gettoken", method: http.MethodGet, query: url.Values{"appkey": {s.key}, "appsecret": {s.secret}}}
	start := s.now()
	if err := s.c.send(ctx, cl, "", nil, &r); err != nil {
		return nil, err
	}
	if r.AccessToken == "" {
		return nil, &Error{API: "gettoken", HTTPStatus: http.StatusOK, Class: Transient, ErrMsg: "reply has no access_token", RequestID: r.RequestID}
	}
	life := time.Duration(r.ExpiresIn) * time.Second
	if r.ExpiresIn <= 0 || r.ExpiresIn > 1<<31 {
		life = DefaultTokenLifetime
	}
	return &Token{AccessToken: r.AccessToken, Expiry: start.Add(life)}, nil
}
