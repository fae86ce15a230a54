// Package dingtalk is a client for DingTalk's group-chat server API: create a
// group chat, add members, read it, and get its QR-code join link.
//
// Every failure is an *Error, and Classify says what to do about it: retry
// (Transient, RateLimited), give up (Permanent), or treat a create as possibly
// done (OutcomeUnknown). The access token and app secret never appear in an
// error. A Client is safe for concurrent use; keep one per app key, so that
// its token cache and rate limiters are shared.
package dingtalk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is DingTalk's server API.
const DefaultBaseURL = "https://oapi.dingtalk.com"

// Options configures a Client. The zero value of every field but the
// credentials is usable.
type Options struct {
	BaseURL    string       // default DefaultBaseURL
	AppKey     string       // the app's key; with AppSecret, used for /gettoken
	AppSecret  string       // never logged, never in an error
	HTTPClient *http.Client // default: 10 s timeout, connections pooled for concurrent use
	// QPS caps calls per second per API from this client (DingTalk's standard
	// limit is 20); 0 means no cap. A rate-limit answer lowers the cap for a while.
	QPS float64
	// TokenSource replaces the built-in /gettoken source (it is cached either way).
	TokenSource TokenSource
	// ExpirySkew is how long before expiry a token is replaced; default DefaultExpirySkew.
	ExpirySkew time.Duration
	Now        func() time.Time // default time.Now
}

// Client calls DingTalk. Create it with NewClient; safe for concurrent use.
type Client struct {
	base     string
	http     *http.Client
	tokens   *TokenCache
	limiters *limiters
}

// NewClient returns a Client for one app.
func NewClient(opts Options) (*Client, error) {
	base := strings.TrimRight(opts.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("dingtalk: base URL must be an absolute http(s) URL")
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
	c := &Client{base: base, http: hc, limiters: newLimiters(opts.QPS, now)}
	src := opts.TokenSource
	if src == nil {
		src = &appTokenSource{c: c, key: opts.AppKey, secret: opts.AppSecret, now: now}
	}
	c.tokens = NewTokenCache(src, opts.ExpirySkew, now)
	return c, nil
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
	method   string     // GET or POST
	query    url.Values // besides access_token
	body     any        // JSON-encoded for POST
	mutating bool       // an effect DingTalk cannot deduplicate: unknown outcomes matter
}

// do sends c with a token, retrying once with a fresh token if DingTalk says
// the token is no good, and decodes the answer into v.
func (c *Client) do(ctx context.Context, cl call, v result) error {
	var payload []byte
	if cl.body != nil {
		var err error
		if payload, err = json.Marshal(cl.body); err != nil {
			return &Error{API: cl.api, Class: Permanent, ErrMsg: "encoding request", Err: err}
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
		*v.base() = reply{}
		err = c.send(ctx, cl, tok.AccessToken, payload, v)
		var e *Error
		if errors.As(err, &e) {
			if e.Class == RateLimited {
				lim.slowDown(e.RetryAfter)
			}
			if attempt == 0 && isTokenCode(e.ErrCode) {
				c.tokens.Invalidate(tok.AccessToken)
				continue
			}
			return err
		}
		lim.succeeded()
		return nil
	}
}

// send performs one HTTP exchange.
func (c *Client) send(ctx context.Context, cl call, token string, payload []byte, v result) error {
	q := url.Values{}
	for k, vs := range cl.query {
		q[k] = vs
	}
	if token != "" {
		q.Set("access_token", token)
	}
	u := c.base + "/" + cl.api + "?" + q.Encode()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return &Error{API: cl.api, Class: Permanent, ErrMsg: "building request", Err: redact(err)}
	}
	req.Header.Set("Accept", "application/json")
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
