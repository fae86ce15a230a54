package dingtalk

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
)

const (
	testKey    = "app-key"
	testSecret = "s3cr3t-app-secret-do-not-print"
	muxToken   = "tok-8f2c1d9e-do-not-print"
)

// setup returns a client talking to a fresh simulator.
func setup(t *testing.T, cfg sim.Config, opts ...func(*Options)) (*Client, *sim.Server) {
	t.Helper()
	cfg.AppKey, cfg.AppSecret = testKey, testSecret
	s := sim.New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	o := Options{Family: Legacy, BaseURL: srv.URL, APIBaseURL: srv.URL, AppKey: testKey, AppSecret: testSecret, Now: cfg.Now}
	for _, f := range opts {
		f(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, s
}

// v1 makes setup's or setupMux's client speak the v1.0 family.
func v1(o *Options) { o.Family = V1 }

// setupMux returns a client and a mux for hand-made replies. Both token
// endpoints already answer muxToken; tests register the API paths they need.
func setupMux(t *testing.T, opts ...func(*Options)) (*Client, *http.ServeMux, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/gettoken", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"errcode":0,"errmsg":"ok","access_token":"` + muxToken + `","expires_in":7200}`))
	})
	mux.HandleFunc("/v1.0/oauth2/accessToken", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"accessToken":"` + muxToken + `","expireIn":7200}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	o := Options{Family: Legacy, BaseURL: srv.URL, APIBaseURL: srv.URL, AppKey: testKey, AppSecret: testSecret}
	for _, f := range opts {
		f(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, mux, srv
}

// newFakeClock is a clock tests move by hand; shared by a client and a simulator.
func newFakeClock() *natstest.Clock {
	return natstest.FrozenClock(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC))
}

func TestNewClientValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no credentials", Options{}},
		{"no secret", Options{AppKey: "k"}},
		{"relative base URL", Options{AppKey: "k", AppSecret: "s", BaseURL: "oapi.dingtalk.com"}},
		{"ftp base URL", Options{AppKey: "k", AppSecret: "s", BaseURL: "ftp://oapi.dingtalk.com"}},
		{"negative QPS", Options{AppKey: "k", AppSecret: "s", QPS: -1}},
		{"unknown family", Options{AppKey: "k", AppSecret: "s", Family: "v2"}},
		{"relative API base URL", Options{AppKey: "k", AppSecret: "s", APIBaseURL: "api.dingtalk.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewClient(tt.opts); err == nil {
				t.Fatal("NewClient accepted invalid options")
			}
		})
	}
	c, err := NewClient(Options{AppKey: "k", AppSecret: "s"})
	if err != nil || c.Family() != V1 {
		t.Fatalf("defaults: %v, family %q; want V1", err, c.Family())
	}
}

// Hooks under one context run outermost first; one that fails stops the
// later ones and the request.
func TestBeforeSendHooksChain(t *testing.T) {
	errStop := errors.New("stop here")
	tests := []struct {
		name      string
		outerErr  error
		wantCalls []string
		wantSent  int
	}{
		{"both pass", nil, []string{"outer topapi/chat/qrcode/get", "inner topapi/chat/qrcode/get"}, 1},
		{"the outer refuses", errStop, []string{"outer topapi/chat/qrcode/get"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := setup(t, sim.Config{})
			var calls []string
			ctx := WithBeforeSend(context.Background(), func(_ context.Context, api string) error {
				calls = append(calls, "outer "+api)
				return tt.outerErr
			})
			ctx = WithBeforeSend(ctx, func(_ context.Context, api string) error { calls = append(calls, "inner "+api); return nil })
			_, err := c.QRCodeLink(ctx, "chat-none", "u1")
			if tt.outerErr != nil && !errors.Is(err, tt.outerErr) {
				t.Fatalf("err = %v, want the hook's error as it is", err)
			}
			if !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("hooks ran %v, want %v", calls, tt.wantCalls)
			}
			if got := s.Stats().Calls["topapi/chat/qrcode/get"]; got != tt.wantSent {
				t.Errorf("%d requests sent, want %d", got, tt.wantSent)
			}
		})
	}
}
