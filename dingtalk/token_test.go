package dingtalk

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"provisioner/dingtalk/sim"
)

func TestConcurrentCallersShareOneTokenFetch(t *testing.T) {
	c, s := setup(t, sim.Config{Faults: sim.Faults{Latency: 20 * time.Millisecond}})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if _, err := c.GetChat(context.Background(), "chatnope"); Classify(err) != Permanent {
				errs <- err // anything but the expected "invalid chatid"
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call failed: %v", err)
	}
	if st := s.Stats(); st.Calls["gettoken"] != 1 || st.TokensIssued != 1 {
		t.Fatalf("gettoken called %d times for 50 concurrent callers, want 1", st.Calls["gettoken"])
	}
}

func TestTokenExpiringMidRun(t *testing.T) {
	t.Run("client clock passes expiry", func(t *testing.T) {
		clock := newFakeClock()
		c, s := setup(t, sim.Config{Now: clock.Now})
		chat := mustCreate(t, c)
		for i := range 30 {
			if _, err := c.GetChat(context.Background(), chat); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			clock.Advance(10 * time.Minute) // 5 hours in all: tokens expire twice
		}
		if n := s.Stats().Calls["gettoken"]; n != 3 {
			t.Fatalf("gettoken called %d times over 3 token lifetimes, want 3", n)
		}
		if n := s.Stats().Calls["chat/get"]; n != 30 {
			t.Fatalf("chat/get called %d times, want 30: no call should be refused", n)
		}
	})
	t.Run("server expires the token early", func(t *testing.T) {
		c, s := setup(t, sim.Config{})
		chat := mustCreate(t, c)
		var wg sync.WaitGroup
		var failed atomic.Int32
		for i := range 40 {
			if i == 20 {
				s.ExpireTokens()
			}
			wg.Go(func() {
				if _, err := c.GetChat(context.Background(), chat); err != nil {
					failed.Add(1)
					t.Errorf("call failed: %v", err)
				}
			})
			if i == 19 {
				wg.Wait()
			}
		}
		wg.Wait()
		if n := s.Stats().TokensIssued; n != 2 {
			t.Fatalf("%d tokens issued, want 2: callers refused with the same token share one refresh", n)
		}
	})
}

func mustCreate(t *testing.T, c *Client) string {
	t.Helper()
	chat, err := c.CreateChat(context.Background(), &CreateChatRequest{Name: "t", Owner: "o", UserIDs: []string{"o"}})
	if err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	return chat.ChatID
}

func TestTokenLifetimeFallbacks(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		stillGood time.Duration // clock advance after which the token is still reused
		due       time.Duration // clock advance after which it is fetched again
	}{
		{"expires_in 0", `{"errcode":0,"access_token":"t","expires_in":0}`, 6000 * time.Second, 7000 * time.Second},
		{"expires_in missing", `{"errcode":0,"access_token":"t"}`, 6000 * time.Second, 7000 * time.Second},
		{"expires_in negative", `{"errcode":0,"access_token":"t","expires_in":-5}`, 6000 * time.Second, 7000 * time.Second},
		{"short lifetime", `{"errcode":0,"access_token":"t","expires_in":60}`, 29 * time.Second, 31 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			var fetches atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/gettoken", func(w http.ResponseWriter, r *http.Request) {
				fetches.Add(1)
				_, _ = w.Write([]byte(tt.body))
			})
			c, err := NewClient(Options{Family: Legacy, BaseURL: serve(t, mux), AppKey: "k", AppSecret: "s", Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for range 100 { // no tight loop: a fixed clock means one fetch
				if _, err := c.tokens.Token(ctx); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(tt.stillGood)
			if _, err := c.tokens.Token(ctx); err != nil || fetches.Load() != 1 {
				t.Fatalf("after %v: %d fetches (err %v), want 1", tt.stillGood, fetches.Load(), err)
			}
			clock.Advance(tt.due - tt.stillGood)
			if _, err := c.tokens.Token(ctx); err != nil || fetches.Load() != 2 {
				t.Fatalf("after %v: %d fetches (err %v), want 2", tt.due, fetches.Load(), err)
			}
		})
	}
}

func TestTokenFetchFailures(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Class
	}{
		{"wrong secret", `{"errcode":40089,"errmsg":"不合法的appKey或appSecret的组合"}`, Misconfigured},
		{"bad credential on the token call", `{"errcode":40001,"errmsg":"invalid credential"}`, Misconfigured},
		{"busy", `{"errcode":-1,"errmsg":"系统繁忙"}`, Transient},
		{"no token in reply", `{"errcode":0,"expires_in":7200}`, Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("/gettoken", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(tt.body)) })
			c, err := NewClient(Options{Family: Legacy, BaseURL: serve(t, mux), AppKey: "k", AppSecret: "s"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetChat(context.Background(), "chat1")
			var e *Error
			if !errors.As(err, &e) || e.API != "gettoken" || Classify(err) != tt.want {
				t.Fatalf("err = %v, want a %v gettoken error", err, tt.want)
			}
		})
	}
}

func TestTokenWaitGivesUpWithContext(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/gettoken", func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = w.Write([]byte(`{"errcode":0,"access_token":"t","expires_in":7200}`))
	})
	url := serve(t, mux)
	t.Cleanup(func() { close(release) })
	c, err := NewClient(Options{Family: Legacy, BaseURL: url, AppKey: "k", AppSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = c.tokens.Token(context.Background()) }() // holds the lock while fetching
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	for {
		_, err := c.tokens.Token(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if err == nil {
			t.Fatal("got a token while the fetch was held")
		}
	}
}

// serve starts an httptest server for h, closed when the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
