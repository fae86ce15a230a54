package dingtalk

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// reply answers every request with status, content type and body.
func replyWith(status int, contentType, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

const js = "application/json"

func TestClassification(t *testing.T) {
	huge := `{"errcode":0,"chat_info":{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}}`
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		read       Class // class of chat/get (idempotent)
		create     Class // class of chat/create (not idempotent)
		code       int
		retryAfter time.Duration
		inText     string
	}{
		{"system busy", replyWith(200, js, `{"errcode":-1,"errmsg":"系统繁忙"}`), Transient, Transient, -1, 0, "system busy"},
		{"system error", replyWith(200, js, `{"errcode":400001,"errmsg":"系统错误"}`), Transient, Transient, 400001, 0, "system error"},
		{"app QPS", replyWith(200, js, `{"errcode":90018,"errmsg":"超过限流"}`), RateLimited, RateLimited, 90018, 0, "QPS"},
		{"global QPS", replyWith(200, js, `{"errcode":90002,"errmsg":"x"}`), RateLimited, RateLimited, 90002, 0, ""},
		{"org per minute", replyWith(200, js, `{"errcode":90005,"errmsg":"x"}`), RateLimited, RateLimited, 90005, 0, ""},
		{"app per minute", replyWith(200, js, `{"errcode":90006,"errmsg":"x"}`), RateLimited, RateLimited, 90006, 0, ""},
		{"88 with sub_code string", replyWith(200, js, `{"errcode":88,"errmsg":"x","sub_code":"90018"}`), RateLimited, RateLimited, 88, 0, "sub_code 90018"},
		{"88 with sub_code number", replyWith(200, js, `{"errcode":88,"errmsg":"x","sub_code":90006}`), RateLimited, RateLimited, 88, 0, "sub_code 90006"},
		{"88 with subcode in errmsg", replyWith(200, js, `{"errcode":88,"errmsg":"ding talk error[subcode=90018,submsg=qps]"}`), RateLimited, RateLimited, 88, 0, "90018"},
		{"88 with busy sub_code", replyWith(200, js, `{"errcode":88,"sub_code":"-1"}`), Transient, Transient, 88, 0, ""},
		{"88 with other sub_code", replyWith(200, js, `{"errcode":88,"errmsg":"x","sub_code":"40035"}`), Permanent, Permanent, 88, 0, ""},
		{"HTTP 403", replyWith(403, js, `{"code":"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}`), RateLimited, RateLimited, 0, 0, "HTTP 403"},
		{"HTTP 429 with Retry-After", replyWith(429, "", ``, "Retry-After", "3"), RateLimited, RateLimited, 0, 3 * time.Second, "HTTP 429"},
		{"IP ban JSON", replyWith(200, js, `{"status":1111,"wait":5,"punish":"deny"}`), RateLimited, RateLimited, 0, 5 * time.Second, "banned"},
		{"IP ban page", replyWith(200, "text/html", `<html><body>访问被拒绝</body></html>`), RateLimited, RateLimited, 0, 5 * time.Minute, "non-JSON page"},
		{"HTTP 502 page", replyWith(502, "text/html", `<html>502 Bad Gateway</html>`), Transient, OutcomeUnknown, 0, 0, "HTTP 502"},
		{"HTTP 503", replyWith(503, "", ``), Transient, OutcomeUnknown, 0, 0, "HTTP 503"},
		{"HTTP 404", replyWith(404, "text/plain", `not found`), Permanent, Permanent, 0, 0, "HTTP 404"},
		{"truncated JSON", replyWith(200, js, `{"errcode":0,"chatid":"chat1`), Transient, OutcomeUnknown, 0, 0, "malformed JSON"},
		{"wrong type", replyWith(200, js, `{"errcode":"zero"}`), Transient, OutcomeUnknown, 0, 0, "errcode"},
		{"empty body", replyWith(200, js, ``), Transient, OutcomeUnknown, 0, 0, "not JSON"},
		{"plain text", replyWith(200, "text/plain", `ok`), Transient, OutcomeUnknown, 0, 0, "not JSON"},
		{"oversized", replyWith(200, js, huge), Transient, OutcomeUnknown, 0, 0, "1 MiB"},
		{"no permission", replyWith(200, js, `{"errcode":43007,"errmsg":"无权限"}`), Misconfigured, Misconfigured, 43007, 0, "no permission"},
		{"IP not allowed", replyWith(200, js, `{"errcode":60020,"errmsg":"访问ip不在白名单之中"}`), Misconfigured, Misconfigured, 60020, 0, "allowlist"},
		{"IP not allowed behind 88", replyWith(200, js, `{"errcode":88,"sub_code":"60020","errmsg":"x"}`), Misconfigured, Misconfigured, 88, 0, "sub_code 60020"},
		{"bad parameter", replyWith(200, js, `{"errcode":400002,"errmsg":"参数错误"}`), Permanent, Permanent, 400002, 0, "bad parameter"},
		{"group rule", replyWith(200, js, `{"errcode":49005,"errmsg":"x"}`), Permanent, Permanent, 49005, 0, ""},
		{"monthly quota", replyWith(200, js, `{"errcode":90020,"errmsg":"x"}`), QuotaExhausted, QuotaExhausted, 90020, 0, "monthly"},
		{"unknown code", replyWith(200, js, `{"errcode":777777,"errmsg":"新错误","request_id":"rq1"}`), Permanent, Permanent, 777777, 0, "unknown errcode 777777"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, _ := setupMux(t)
			mux.HandleFunc("/chat/get", tt.handler)
			mux.HandleFunc("/chat/create", tt.handler)
			ctx := context.Background()
			_, readErr := c.GetChat(ctx, "chat1")
			_, createErr := c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"o"}})
			for _, got := range []struct {
				err  error
				want Class
			}{{readErr, tt.read}, {createErr, tt.create}} {
				var e *Error
				if !errors.As(got.err, &e) {
					t.Fatalf("err = %v, want *Error", got.err)
				}
				if Classify(got.err) != got.want {
					t.Errorf("%s: class %v, want %v (%v)", e.API, Classify(got.err), got.want, got.err)
				}
				if banned := strings.HasPrefix(tt.name, "IP ban"); e.IPBanned != banned {
					t.Errorf("%s: IPBanned %v, want %v", e.API, e.IPBanned, banned)
				}
				if e.ErrCode != tt.code || e.RetryAfter != tt.retryAfter {
					t.Errorf("%s: errcode %d retryAfter %v, want %d %v", e.API, e.ErrCode, e.RetryAfter, tt.code, tt.retryAfter)
				}
				if !strings.Contains(got.err.Error(), tt.inText) || !strings.HasPrefix(got.err.Error(), "dingtalk: "+e.API+": ") {
					t.Errorf("error text %q, want prefix and %q", got.err, tt.inText)
				}
			}
		})
	}
}

// TestV1Classification is the v1.0 half of the one classification table:
// each reply is tried on an idempotent v1.0 call (sceneGroups/query) and on
// a create (group/create).
func TestV1Classification(t *testing.T) {
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		read      Class
		create    Class
		code      string
		requestID string
		inText    string
	}{
		{"app QPS, gateway casing", replyWith(403, js, `{"Code":"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi","Message":"qps","RequestId":"r1","HostId":"api"}`),
			RateLimited, RateLimited, CodeV1QPSAppAPI, "r1", "HTTP 403 Forbidden.AccessDenied.QpsLimitForAppkeyAndApi: qps"},
		{"API QPS", replyWith(403, js, `{"Code":"Forbidden.AccessDenied.QpsLimitForApi"}`), RateLimited, RateLimited, CodeV1QPSAPI, "", ""},
		{"app QPM", replyWith(403, js, `{"Code":"Forbidden.AccessDenied.QpmLimitForAppkeyAndApi"}`), RateLimited, RateLimited, CodeV1QPMAppAPI, "", ""},
		{"qps.exceed.limit", replyWith(400, js, `{"code":"qps.exceed.limit","message":"x","requestid":"r2"}`), RateLimited, RateLimited, CodeV1QPSExceeded, "r2", ""},
		{"monthly quota", replyWith(403, js, `{"Code":"Forbidden.AccessDenied.ApiCountLimitForOrg","Message":"quota"}`),
			QuotaExhausted, QuotaExhausted, CodeV1MonthlyQuota, "", "ApiCountLimitForOrg"},
		{"system.error", replyWith(500, js, `{"code":"system.error","message":"请重试","requestid":"r3"}`), Transient, Transient, CodeV1SystemError, "r3", "HTTP 500 system.error"},
		{"system.busy", replyWith(429, js, `{"code":"system.busy","message":"busy"}`), Transient, Transient, CodeV1SystemBusy, "", ""},
		{"other 5xx with a code", replyWith(503, js, `{"code":"ServiceUnavailable"}`), Transient, Transient, "ServiceUnavailable", "", ""},
		{"502 page", replyWith(502, "text/html", `<html>502</html>`), Transient, OutcomeUnknown, "", "", "HTTP 502"},
		{"parameter.invalid", replyWith(400, js, `{"code":"parameter.invalid","message":"输入参数错误"}`), Permanent, Permanent, CodeV1InvalidParameter, "", "输入参数错误"},
		{"permession.checkFailed", replyWith(400, js, `{"code":"permession.checkFailed","message":"群主不在应用可见性内"}`), Permanent, Permanent, CodeV1PermissionDenied, "", ""},
		{"member.notFound", replyWith(400, js, `{"code":"member.notFound"}`), Permanent, Permanent, CodeV1MemberNotFound, "", ""},
		{"member.exceed", replyWith(400, js, `{"code":"member.exceed"}`), Permanent, Permanent, CodeV1MemberExceed, "", ""},
		{"template not found", replyWith(400, js, `{"code":"groupTemplate.notFound"}`), Permanent, Permanent, CodeV1TemplateNotFound, "", ""},
		{"template permission", replyWith(400, js, `{"code":"groupTemplate.permessionDenied.appNotInstalled"}`), Permanent, Permanent, "groupTemplate.permessionDenied.appNotInstalled", "", ""},
		{"a 403 that is a permission", replyWith(403, js, `{"Code":"Forbidden.AccessDenied.AccessTokenPermissionDenied","Message":"应用尚未开通所需的权限"}`),
			Misconfigured, Misconfigured, CodeV1PermissionNotGranted, "", "应用尚未开通所需的权限"},
		{"a 403 that is the IP allowlist", replyWith(403, js, `{"Code":"Forbidden.AccessDenied.IpNotInWhiteList","Message":"request ip=203.0.113.9"}`),
			Misconfigured, Misconfigured, CodeV1IPNotAllowed, "", "203.0.113.9"},
		{"unknown code", replyWith(400, js, `{"code":"brand.new","message":"新"}`), Permanent, Permanent, "brand.new", "", "unknown code brand.new"},
		{"truncated success", replyWith(200, js, `{"chatid":"c`), Transient, OutcomeUnknown, "", "", "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, _ := setupMux(t, v1)
			mux.HandleFunc("/v1.0/im/sceneGroups/query", tt.handler)
			mux.HandleFunc("/v1.0/im/group/create", tt.handler)
			ctx := context.Background()
			_, readErr := c.SceneGroup(ctx, "cid1")
			_, createErr := c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"o"}})
			for _, got := range []struct {
				err  error
				want Class
			}{{readErr, tt.read}, {createErr, tt.create}} {
				var e *Error
				if !errors.As(got.err, &e) {
					t.Fatalf("err = %v, want *Error", got.err)
				}
				if Classify(got.err) != got.want || e.Code != tt.code || e.RequestID != tt.requestID {
					t.Errorf("%s: class %v code %q request id %q, want %v %q %q (%v)", e.API, Classify(got.err), e.Code, e.RequestID, got.want, tt.code, tt.requestID, got.err)
				}
				if e.Refused() != (tt.code != "") {
					t.Errorf("%s: Refused() = %v with code %q", e.API, e.Refused(), e.Code)
				}
				if !strings.Contains(got.err.Error(), tt.inText) || !strings.HasPrefix(got.err.Error(), "dingtalk: "+e.API+": ") {
					t.Errorf("error text %q, want prefix and %q", got.err, tt.inText)
				}
			}
		})
	}
}

func TestTransportFailures(t *testing.T) {
	ctx := context.Background()
	create := func(c *Client) error {
		_, err := c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"o"}})
		return err
	}
	get := func(c *Client) error {
		_, err := c.GetChat(ctx, "chat1")
		return err
	}
	t.Run("timeout", func(t *testing.T) {
		c, mux, _ := setupMux(t, func(o *Options) { o.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond} })
		block := func(w http.ResponseWriter, r *http.Request) { hang(t, r) }
		mux.HandleFunc("/chat/create", block)
		mux.HandleFunc("/chat/get", block)
		if err := create(c); Classify(err) != OutcomeUnknown {
			t.Errorf("create timeout: %v, want outcome unknown", err)
		}
		if err := get(c); Classify(err) != Transient {
			t.Errorf("get timeout: %v, want transient", err)
		}
	})
	t.Run("connection dropped mid-reply", func(t *testing.T) {
		c, mux, _ := setupMux(t)
		drop := func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"errcode\":0,"))
			conn.Close()
		}
		mux.HandleFunc("/chat/create", drop)
		mux.HandleFunc("/chat/get", drop)
		if err := create(c); Classify(err) != OutcomeUnknown {
			t.Errorf("create: %v, want outcome unknown", err)
		}
		if err := get(c); Classify(err) != Transient {
			t.Errorf("get: %v, want transient", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, err := NewClient(Options{Family: Legacy, BaseURL: "http://" + addr, TokenSource: staticToken(muxToken)})
		if err != nil {
			t.Fatal(err)
		}
		if err := create(c); Classify(err) != Transient {
			t.Errorf("create: %v, want transient: the request never left", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		c, mux, _ := setupMux(t)
		cctx, cancel := context.WithCancel(ctx)
		mux.HandleFunc("/chat/create", func(w http.ResponseWriter, r *http.Request) { cancel(); hang(t, r) })
		_, err := c.CreateChat(cctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"o"}})
		if !errors.Is(err, context.Canceled) || Classify(err) != OutcomeUnknown {
			t.Errorf("cancelled create: %v (class %v), want context.Canceled, outcome unknown", err, Classify(err))
		}
	})
}

// hang keeps a handler from answering until the client gives up or the test
// ends. (A server notices a client hanging up only after reading the body.)
func hang(t *testing.T, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-t.Context().Done():
	}
}

func TestBadTokenIsRefreshedOnceAndRetried(t *testing.T) {
	for _, code := range []int{CodeInvalidToken, CodeTokenExpired, CodeInvalidCredential} {
		t.Run("recovers after "+strconv.Itoa(code), func(t *testing.T) {
			c, mux, _ := setupMux(t)
			var calls atomic.Int32
			mux.HandleFunc("/chat/get", func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					_, _ = w.Write([]byte(`{"errcode":` + strconv.Itoa(code) + `}`))
					return
				}
				_, _ = w.Write([]byte(`{"errcode":0,"chat_info":{"name":"ok"}}`))
			})
			info, err := c.GetChat(context.Background(), "chat1")
			if err != nil || info.Name != "ok" || calls.Load() != 2 {
				t.Fatalf("GetChat = %v, %v after %d calls; want success on the second", info, err, calls.Load())
			}
		})
	}
	t.Run("v1.0 recovers after 401 InvalidAuthentication", func(t *testing.T) {
		c, mux, _ := setupMux(t, v1)
		var calls atomic.Int32
		mux.HandleFunc("/v1.0/im/group/update", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("x-acs-dingtalk-access-token") != muxToken || r.URL.Query().Has("access_token") {
				t.Errorf("token placement: header %q, query %q", r.Header.Get("x-acs-dingtalk-access-token"), r.URL.RawQuery)
			}
			if calls.Add(1) == 1 {
				replyWith(401, js, `{"code":"InvalidAuthentication","message":"不合法的access_token"}`)(w, r)
				return
			}
			_, _ = w.Write([]byte(`{"success":true}`))
		})
		err := c.UpdateChat(context.Background(), &UpdateChatRequest{ChatID: "chat1", AddUserIDs: []string{"u1"}})
		if err != nil || calls.Load() != 2 {
			t.Fatalf("UpdateChat = %v after %d calls; want success on the second", err, calls.Load())
		}
	})
	t.Run("gives up after one retry", func(t *testing.T) {
		c, mux, _ := setupMux(t)
		var calls atomic.Int32
		mux.HandleFunc("/chat/get", func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			_, _ = w.Write([]byte(`{"errcode":40014,"errmsg":"不合法的access_token"}`))
		})
		_, err := c.GetChat(context.Background(), "chat1")
		if Classify(err) != Permanent || calls.Load() != 2 {
			t.Fatalf("err %v after %d calls, want permanent after 2", err, calls.Load())
		}
	})
}

// staticToken is a TokenSource that always returns the same token.
type staticToken string

func (s staticToken) Token(context.Context) (*Token, error) {
	return &Token{AccessToken: string(s), Expiry: time.Now().Add(time.Hour)}, nil
}
