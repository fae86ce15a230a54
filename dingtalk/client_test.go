package dingtalk

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"provisioner/dingtalk/sim"
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
	o := Options{BaseURL: srv.URL, AppKey: testKey, AppSecret: testSecret, Now: cfg.Now}
	for _, f := range opts {
		f(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, s
}

// setupMux returns a client and a mux for hand-made replies. /gettoken
// already answers muxToken; tests register the API paths they need.
func setupMux(t *testing.T, opts ...func(*Options)) (*Client, *http.ServeMux, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/gettoken", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"errcode":0,"errmsg":"ok","access_token":"` + muxToken + `","expires_in":7200}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	o := Options{BaseURL: srv.URL, AppKey: testKey, AppSecret: testSecret}
	for _, f := range opts {
		f(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, mux, srv
}

// fakeClock is a clock tests move by hand; shared by a client and a simulator.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time // guarded by mu
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewClient(tt.opts); err == nil {
				t.Fatal("NewClient accepted invalid options")
			}
		})
	}
	if _, err := NewClient(Options{AppKey: "k", AppSecret: "s"}); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
}
