package dingtalk

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// The token endpoints, as Error.API names them.
const (
	apiGetToken    = "gettoken"
	apiAccessToken = "v1.0/oauth2/accessToken"
)

// appTokenSource fetches tokens from the old family's GET /gettoken.
type appTokenSource struct {
	c           *Client
	key, secret string
	now         func() time.Time
}

// Token asks DingTalk for the app's token. DingTalk answers the same token
// while it is valid, so a repeated call is harmless but counts against the
// app's throttling: callers go through a TokenCache.
func (s *appTokenSource) Token(ctx context.Context) (*Token, error) {
	var r struct {
		reply
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	cl := call{api: apiGetToken, method: http.MethodGet, query: url.Values{"appkey": {s.key}, "appsecret": {s.secret}}}
	start := s.now()
	if err := s.c.send(ctx, cl, "", nil, &r); err != nil {
		return nil, err
	}
	return newToken(cl.api, r.AccessToken, r.ExpiresIn, r.RequestID, start)
}

// v1TokenSource fetches tokens from v1.0's POST /v1.0/oauth2/accessToken.
// The secret travels in the body, never in a URL.
type v1TokenSource struct {
	c           *Client
	key, secret string
	now         func() time.Time
}

// Token asks DingTalk for the app's token; see appTokenSource.Token.
func (s *v1TokenSource) Token(ctx context.Context) (*Token, error) {
	var r struct {
		reply
		AccessToken string `json:"accessToken"`
		ExpireIn    int64  `json:"expireIn"`
	}
	cl := call{api: apiAccessToken, v1: true, method: http.MethodPost}
	body := struct {
		AppKey    string `json:"appKey"`
		AppSecret string `json:"appSecret"`
	}{s.key, s.secret}
	payload, err := jsonBody(cl.api, body)
	if err != nil {
		return nil, err
	}
	start := s.now()
	if err := s.c.send(ctx, cl, "", payload, &r); err != nil {
		return nil, err
	}
	return newToken(cl.api, r.AccessToken, r.ExpireIn, r.RequestID, start)
}

// newToken checks a token reply; a missing lifetime means DefaultTokenLifetime.
func newToken(api, token string, expiresIn int64, requestID string, fetched time.Time) (*Token, error) {
	if token == "" {
		return nil, &Error{API: api, HTTPStatus: http.StatusOK, Class: Transient, ErrMsg: "reply has no access token", RequestID: requestID}
	}
	life := time.Duration(expiresIn) * time.Second
	if expiresIn <= 0 || expiresIn > 1<<31 {
		life = DefaultTokenLifetime
	}
	return &Token{AccessToken: token, Expiry: fetched.Add(life)}, nil
}
