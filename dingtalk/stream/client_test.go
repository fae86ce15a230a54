package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"provisioner/dingtalk/sim"
	"provisioner/dingtalk/stream"
	"provisioner/internal/natstest"
)

// received records what the handler was given.
type received struct {
	mu     sync.Mutex
	byID   map[string]int // deliveries per event id
	events []stream.Event
	fail   func(stream.Event) bool
}

func (r *received) handle(_ context.Context, ev stream.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil && r.fail(ev) {
		return errors.New("not stored")
	}
	r.byID[ev.ID]++
	r.events = append(r.events, ev)
	return nil
}

func (r *received) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

type setup struct {
	sim  *sim.Server
	srv  *httptest.Server
	got  *received
	logs *natstest.LogBuffer
}

func start(t *testing.T, sc sim.StreamConfig, secret string) (*setup, *stream.Client) {
	t.Helper()
	s := sim.New(sim.Config{AppKey: "key", AppSecret: "secret", Stream: sc})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	st := &setup{sim: s, srv: srv, got: &received{byID: map[string]int{}}, logs: &natstest.LogBuffer{}}
	c, err := stream.New(stream.Config{BaseURL: srv.URL, ClientID: "key", ClientSecret: secret, Handler: st.got.handle,
		Log: zerolog.New(st.logs), InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return st, c
}

func run(t *testing.T, c *stream.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// group makes a plain group with members a, b, c owned by o.
func group(t *testing.T, s *sim.Server) string {
	t.Helper()
	s.Restore(sim.Group{ChatID: "chat1", OpenConversationID: "cid1", Name: "n", Owner: "o", Members: []string{"o", "a", "b", "c"}})
	return "chat1"
}

func TestEventsAreAnsweredOnceStored(t *testing.T) {
	st, c := start(t, sim.StreamConfig{PingInterval: 50 * time.Millisecond, RedeliverAfter: 200 * time.Millisecond}, "secret")
	id := group(t, st.sim)
	run(t, c)
	natstest.Eventually(t, 5*time.Second, "a connection", func() bool { return c.Connected() }, nil)
	st.sim.QuitByHand(id, "a")
	st.sim.SetOwnerByHand(id, "b")
	st.sim.RenameByHand(id, "renamed")
	natstest.Eventually(t, 5*time.Second, "three events answered SUCCESS, and pings answered", func() bool {
		s := st.sim.StreamStats()
		return s.Acked == 3 && s.Pending == 0 && s.Pongs > 0
	}, nil)
	types := map[string]bool{}
	for _, ev := range st.got.events {
		types[ev.Type] = true
		if ev.ID == "" || ev.BornAt.IsZero() || !json.Valid(ev.Data) {
			t.Errorf("event %+v: id, birth or data missing", ev)
		}
	}
	for _, want := range []string{"chat_quit", "chat_update_owner", "chat_update_title"} {
		if !types[want] {
			t.Errorf("no %s event among %v", want, types)
		}
	}
}

func TestAnEventNotStoredIsPushedAgain(t *testing.T) {
	st, c := start(t, sim.StreamConfig{RedeliverAfter: 50 * time.Millisecond}, "secret")
	id := group(t, st.sim)
	var mu sync.Mutex
	refusals := 0
	st.got.fail = func(stream.Event) bool {
		mu.Lock()
		defer mu.Unlock()
		refusals++
		return refusals <= 2
	}
	run(t, c)
	st.sim.QuitByHand(id, "a")
	natstest.Eventually(t, 5*time.Second, "the event stored on the third push", func() bool { s := st.sim.StreamStats(); return s.Acked == 1 && s.Pending == 0 }, nil)
	if s := st.sim.StreamStats(); s.Later != 2 || st.got.distinct() != 1 {
		t.Errorf("LATER answers %d, events stored %d: want 2 and 1", s.Later, st.got.distinct())
	}
}

func TestADisconnectMovesWithoutLosingEvents(t *testing.T) {
	st, c := start(t, sim.StreamConfig{RedeliverAfter: 100 * time.Millisecond, DisconnectGrace: 300 * time.Millisecond}, "secret")
	id := group(t, st.sim)
	run(t, c)
	natstest.Eventually(t, 5*time.Second, "a connection", c.Connected, nil)
	names := 0
	for round := range 3 {
		for i := range 5 {
			names++
			st.sim.RenameByHand(id, "name-"+string(rune('a'+round))+string(rune('a'+i)))
		}
		st.sim.Disconnect()
		natstest.Eventually(t, 5*time.Second, "a new connection", func() bool { return st.sim.StreamStats().Connected == round+2 }, nil)
	}
	natstest.Eventually(t, 5*time.Second, "every event answered, one connection left", func() bool {
		s := st.sim.StreamStats()
		return s.Pending == 0 && s.Connections == 1
	}, nil)
	if got := st.got.distinct(); got != names {
		t.Errorf("%d distinct events stored, want %d", got, names)
	}
	if s := st.sim.StreamStats(); s.Opened != 4 || s.Peak != 2 {
		t.Errorf("%d tickets opened, at most %d connections at once: want 4 (one per connection), and 2 (the next opened before the old closed)", s.Opened, s.Peak)
	}
}

func TestWrongCredentialsAreRefusedAndRetried(t *testing.T) {
	st, c := start(t, sim.StreamConfig{}, "wrong")
	run(t, c)
	natstest.Eventually(t, 5*time.Second, "two refused opens logged", func() bool { return strings.Count(st.logs.String(), "authFailed") >= 2 }, nil)
	if c.Connected() || strings.Contains(st.logs.String(), "wrong") {
		t.Errorf("connected %v, or the secret was logged:\n%s", c.Connected(), st.logs.String())
	}
}
