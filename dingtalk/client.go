// Package dingtalk is a client for DingTalk's group-chat server API: create a
// group chat, add members, read it, and get its QR-code join link, through
// either API family (the current v1.0 API, or the old one that apps created
// before its retirement still hold), and scene groups made from a template.
//
// Every failure is an *Error, and Classify says what to do about it: retry
// (Transient, RateLimited), give up (Permanent, QuotaExhausted), or treat a
// create as possibly done (OutcomeUnknown). The access token and app secret
// never appear in an error. A Client is safe for concurrent use; keep one per
// app key, so that its token cache and rate limiters are shared.
package dingtalk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Base URLs of DingTalk's two hosts.
const (
	DefaultBaseURL    = "https://oapi.dingtalk.com" // the old family, chat/get and qrcode/get
	DefaultAPIBaseURL = "https://api.dingtalk.com"  // the v1.0 family
)

// Family is the API family a Client creates and updates groups with.
type Family string

const (
	// V1 is DingTalk's current API: tokens from /v1.0/oauth2/accessToken,
	// groups through /v1.0/im/group/create and /update. The only family an
	// app created today can be granted.
	V1 Family = "v1"
	// Legacy is the old API: /gettoken, chat/create and chat/update, which
	// DingTalk no longer grants to new apps but keeps serving to apps that
	// hold them.
	Legacy Family = "legacy"
)

// ParseFamily reads "v1" or "legacy".
func ParseFamily(s string) (Family, error) {
	switch f := Family(s); f {
	case V1, Legacy:
		return f, nil
	}
	return "", fmt.Errorf("dingtalk: API family must be %q or %q, got %q", V1, Legacy, s)
}

// Options configures a Client. The zero value of every field but the
// credentials is usable.
type Options struct {
	Family     Family       // default V1
	BaseURL    string       // the oapi host; default DefaultBaseURL
	APIBaseURL string       // the v1.0 host; default DefaultAPIBaseURL
	AppKey     string       // the app's key; with AppSecret, used to fetch tokens
	AppSecret  string       // never logged, never in an error
	HTTPClient *http.Client // default: 10 s timeout, connections pooled for concurrent use
	// QPS caps calls per second per API from this client (DingTalk's standard
	// limit is 20); 0 means no cap. A rate-limit answer lowers the cap for a while.
	QPS float64
	// TokenSource replaces the built-in source (/v1.0/oauth2/accessToken for
	// V1, /gettoken for Legacy); it is cached either way.
	TokenSource TokenSource
	// ExpirySkew is how long before expiry a token is replaced; default DefaultExpirySkew.
	ExpirySkew time.Duration
	// Observer sees every HTTP exchange, token fetches included (metrics,
	// traces); nil: none.
	Observer Observer
	Now      func() time.Time // default time.Now
}

// Observer watches each HTTP exchange with DingTalk. StartCall is called
// just before a request to api (e.g. "v1.0/im/group/create") leaves, with
// the caller's context; the func it returns is called once, when the answer
// is in, with nil or the *Error the client returns. An implementation must
// be safe for concurrent use and must not keep the context.
type Observer interface {
	StartCall(ctx context.Context, api string) (done func(err error))
}

// Client calls DingTalk. Create it with NewClient; safe for concurrent use.
type Client struct {
	family   Family
	base     string // oapi
	apiBase  string // v1.0
	http     *http.Client
	tokens   *TokenCache
	limiters *limiters
	observer Observer // nil: none
	now      func() time.Time
}

// NewClient returns a Client for one app.
func NewClient(opts Options) (*Client, error) {
	family := opts.Family
	if family == "" {
		family = V1
	}
	if _, err := ParseFamily(string(family)); err != nil {
		return nil, err
	}
	base, err := baseURL("base URL", opts.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	apiBase, err := baseURL("API base URL", opts.APIBaseURL, DefaultAPIBaseURL)
	if err != nil {
		return nil, err
	}
	if opts.TokenSource == nil && (opts.AppKey == "" || opts.AppSecret == "") {
		return nil, errors.New("dingtalk: app key and app secret are required")
	}
	if opts.QPS < 0 {
		return nil, errors.New("dingtalk: QPS must not be negative")
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	c := &Client{family: family, base: base, apiBase: apiBase, http: hc, limiters: newLimiters(opts.QPS, now), observer: opts.Observer, now: now}
	src := opts.TokenSource
	switch {
	case src != nil:
	case family == Legacy:
		src = &appTokenSource{c: c, key: opts.AppKey, secret: opts.AppSecret, now: now}
	default:
		src = &v1TokenSource{c: c, key: opts.AppKey, secret: opts.AppSecret, now: now}
	}
	c.tokens = NewTokenCache(src, opts.ExpirySkew, now)
	return c, nil
}

// Family returns the API family the client creates and updates groups with.
func (c *Client) Family() Family { return c.family }

func baseURL(what, s, def string) (string, error) {
	s = strings.TrimRight(s, "/")
	if s == "" {
		s = def
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("dingtalk: " + what + " must be an absolute http(s) URL")
	}
	return s, nil
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128 // many workers talk to one host; the default 2 churns connections
	t.ResponseHeaderTimeout = 10 * time.Second
	return &http.Client{Transport: t, Timeout: 15 * time.Second}
}

// call describes one API request.
type call struct {
	api      string     // path without the leading slash, e.g. "chat/create"
	v1       bool       // on the v1.0 host, token in the header; else oapi, token in the query
	method   string     // GET or POST
	query    url.Values // besides access_token
	body     any        // JSON-encoded for POST
	mutating bool       // has an effect: a reply that proves nothing leaves the outcome unknown
}

type beforeSendKey struct{}

// BeforeSend is called just before a request to api (e.g. "v1.0/im/group/create") leaves.
type BeforeSend func(ctx context.Context, api string) error

// WithBeforeSend returns a context under which every API request (not a
// token fetch) calls fn once per attempt, after the token and the rate
// limiter and immediately before the request leaves. If fn fails, the
// request is not sent and its error is returned as it is. A caller uses it
// to record durably that an effect is about to be on the wire, so that a
// crash while waiting for the limiter is not mistaken for one after sending,
// or to count the call against a shared budget. Under a context that already
// has one, the earlier fn runs first, and fn only if it passed.
func WithBeforeSend(ctx context.Context, fn BeforeSend) context.Context {
	if first, ok := ctx.Value(beforeSendKey{}).(BeforeSend); ok {
		then := fn
		fn = func(ctx context.Context, api string) error {
			if err := first(ctx, api); err != nil {
				return err
			}
			return then(ctx, api)
		}
	}
	return context.WithValue(ctx, beforeSendKey{}, fn)
}

type answeredKey struct{}

// Answered is called when a request to api that BeforeSend let go has its
// answer (or failed), with the time it took from just before it left.
type Answered func(api string, took time.Duration)

// WithAnswered returns a context under which every API request (not a
// token fetch) calls fn once its answer is in: how long DingTalk took to
// answer, for a caller that paces its requests by how much that varies.
func WithAnswered(ctx context.Context, fn Answered) context.Context {
	return context.WithValue(ctx, answeredKey{}, fn)
}

// do sends c with a token, retrying once with a fresh token if DingTalk says
// the token is no good, and decodes the answer into v.
func (c *Client) do(ctx context.Context, cl call, v result) error {
	var payload []byte
	if cl.body != nil {
		var err error
		if payload, err = jsonBody(cl.api, cl.body); err != nil {
			return err
		}
	}
	lim := c.limiters.get(cl.api)
	for attempt := 0; ; attempt++ {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return err
		}
		if err := lim.wait(ctx); err != nil {
			return &Error{API: cl.api, Class: Transient, ErrMsg: "waiting for the rate limiter", Err: err}
		}
		if fn, ok := ctx.Value(beforeSendKey{}).(BeforeSend); ok {
			if err := fn(ctx, cl.api); err != nil {
				return err
			}
		}
		*v.base() = reply{}
		sent := c.now()
		err = c.send(ctx, cl, tok.AccessToken, payload, v)
		if fn, ok := ctx.Value(answeredKey{}).(Answered); ok {
			fn(cl.api, c.now().Sub(sent))
		}
		var e *Error
		if errors.As(err, &e) {
			if e.Class == RateLimited {
				lim.slowDown(e.RetryAfter)
			}
			if attempt == 0 && isTokenError(e) {
				c.tokens.Invalidate(tok.AccessToken)
				continue
			}
			return err
		}
		lim.succeeded()
		return nil
	}
}

// send performs one HTTP exchange, watched by the observer.
func (c *Client) send(ctx context.Context, cl call, token string, payload []byte, v result) error {
	if c.observer == nil {
		return c.exchange(ctx, cl, token, payload, v)
	}
	done := c.observer.StartCall(ctx, cl.api)
	err := c.exchange(ctx, cl, token, payload, v)
	done(err)
	return err
}

// exchange performs one HTTP exchange.
func (c *Client) exchange(ctx context.Context, cl call, token string, payload []byte, v result) error {
	q := url.Values{}
	for k, vs := range cl.query {
		q[k] = vs
	}
	base := c.base
	if cl.v1 {
		base = c.apiBase
	} else if token != "" {
		q.Set("access_token", token)
	}
	u := base + "/" + cl.api
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return &Error{API: cl.api, Class: Permanent, ErrMsg: "building request", Err: redact(err)}
	}
	req.Header.Set("Accept", "application/json")
	if cl.v1 && token != "" {
		req.Header.Set(tokenHeader, token)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &Error{API: cl.api, Class: transportClass(err, cl.mutating), Err: redact(err)}
	}
	defer resp.Body.Close()
	data, tooBig, err := readBody(resp.Body)
	unreadable := unreadableClass(cl.mutating)
	if err != nil {
		return &Error{API: cl.api, HTTPStatus: resp.StatusCode, Class: unreadable, ErrMsg: "reading reply", Err: redact(err)}
	}
	if tooBig {
		return &Error{API: cl.api, HTTPStatus: resp.StatusCode, Class: unreadable, ErrMsg: "reply exceeds 1 MiB"}
	}
	return checkResponse(cl.api, cl.mutating, resp.StatusCode, resp.Header, data, v)
}

// transportClass classifies a failure to get a reply. A request that never
// left (the connection could not be made) is Transient even when mutating.
func transportClass(err error, mutating bool) Class {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return Transient
	}
	return unreadableClass(mutating)
}

// tokenHeader carries the access token on v1.0 calls; v1.0 refuses a
// token in the query string.
const tokenHeader = "x-acs-dingtalk-access-token"

func jsonBody(api string, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, &Error{API: api, Class: Permanent, ErrMsg: "encoding request", Err: err}
	}
	return b, nil
}
