package worker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/messages"
)

// checkAllProvisioned asserts one provisioned result per event and one group
// per event in DingTalk, and returns the results.
func checkAllProvisioned(t *testing.T, e *env, n int) []result {
	t.Helper()
	rs := e.results(n)
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Subject != "group.provisioned" {
			t.Errorf("not provisioned: %s", r.Raw)
		}
		if seen[r.SourceID] {
			t.Errorf("two results for %s", r.SourceID)
		}
		seen[r.SourceID] = true
	}
	if len(rs) != n {
		t.Errorf("%d results, want %d", len(rs), n)
	}
	if st := e.sim.Stats(); st.GroupsCreated != n || st.Duplicates != 0 {
		t.Errorf("DingTalk holds %d groups (%d duplicates), want %d and none", st.GroupsCreated, st.Duplicates, n)
	}
	return rs
}

func TestThirtyPercentBusy(t *testing.T) {
	const events = 200
	e := newEnv(t, sim.Config{Seed: 42, Faults: sim.Faults{BusyRate: 0.3}})
	e.start(testConfig(), nil)
	for i := range events {
		e.publish("project.created", project(fmt.Sprint(i), "u1", "u2"))
	}
	rs := checkAllProvisioned(t, e, events)
	st := e.sim.Stats()
	apiCalls := st.Calls["chat/create"] + st.Calls["topapi/chat/qrcode/get"]
	attempts := 0
	for _, r := range rs {
		attempts += r.Attempts
	}
	// Every call is either one that worked (2 per event) or an injected busy answer.
	if apiCalls != 2*events+st.Busy-(st.Calls["gettoken"]-st.TokensIssued) || attempts != apiCalls {
		t.Errorf("%d API calls, %d busy answers, %d attempts reported: they must add up", apiCalls, st.Busy, attempts)
	}
	t.Logf("30%% busy: %.2f DingTalk calls per event (%d busy answers), gettoken %d", float64(apiCalls)/events, st.Busy, st.Calls["gettoken"])
}

func TestTokenExpiresMidRun(t *testing.T) {
	const events = 60
	e := newEnv(t, sim.Config{})
	e.start(testConfig(), nil)
	for i := range events {
		if i == events/2 {
			e.waitFor("half the groups", func() bool { return e.sim.Stats().GroupsCreated >= events/4 })
			e.sim.ExpireTokens()
		}
		e.publish("event.scheduled", map[string]any{"id": fmt.Sprint(i), "event_id": "E", "title": fmt.Sprint("t", i), "organizer": "o",
			"attendees": []string{"a"}, "starts_at": "2026-12-01T09:00:00Z"})
	}
	checkAllProvisioned(t, e, events)
	if st := e.sim.Stats(); st.TokensIssued != 2 {
		t.Errorf("%d tokens issued, want 2", st.TokensIssued)
	}
}

func TestRetriesExhausted(t *testing.T) {
	e := newEnv(t, sim.Config{Faults: sim.Faults{BusyRate: 1}})
	cfg := testConfig()
	cfg.RetryBudget = 300 * time.Millisecond
	e.start(cfg, nil)
	e.publish("project.created", project("doomed", "u1"))
	r := e.results(1)[0]
	if r.Subject != "group.failed" || r.Error.Reason != messages.ReasonRetriesExhausted || r.Attempts < 2 || r.Error.DingTalkErrcode == nil {
		t.Fatalf("result: %s", r.Raw)
	}
	dead := e.readStream("PROVISIONER_DEAD_LETTERS", 1)
	if dead[0].Subject != "provisioner.dead_letter.project.created" {
		t.Fatalf("dead letter on %s", dead[0].Subject)
	}
	e.waitFor("the message settled", func() bool { return e.pending() == 0 })
}

// counting wraps the client and counts the calls one worker makes.
type counting struct {
	*dingtalk.Client
	creates atomic.Int32
}

func (c *counting) CreateChat(ctx context.Context, req *dingtalk.CreateChatRequest) (*dingtalk.CreatedChat, error) {
	c.creates.Add(1)
	return c.Client.CreateChat(ctx, req)
}

func TestTwoWorkersShareOneConsumer(t *testing.T) {
	const events = 200
	e := newEnv(t, sim.Config{Faults: sim.Faults{Latency: 2 * time.Millisecond, BusyRate: 0.1}, Seed: 3})
	a, b := &counting{Client: e.client}, &counting{Client: e.client}
	e.start(testConfig(), a)
	e.start(testConfig(), b)
	for i := range events {
		e.publish("project.created", project(fmt.Sprint(i), "u1"))
	}
	checkAllProvisioned(t, e, events)
	if a.creates.Load() == 0 || b.creates.Load() == 0 {
		t.Errorf("work was not shared: %d and %d creates", a.creates.Load(), b.creates.Load())
	}
}

// gate holds one kind of DingTalk call until released, to stop a worker at a
// chosen step. Once released, its worker counts as dead: every call fails
// without reaching DingTalk.
type gate struct {
	*dingtalk.Client
	holdCreate, holdLink bool
	arrived              chan struct{}
	release              chan struct{}
}

var errDead = &dingtalk.Error{API: "gate", Class: dingtalk.Transient, ErrMsg: "this worker is dead"}

func newGate(c *dingtalk.Client) *gate {
	return &gate{Client: c, arrived: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (g *gate) dead() bool {
	select {
	case <-g.release:
		return true
	default:
		return false
	}
}

func (g *gate) hold(ctx context.Context) error {
	g.arrived <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return errDead
}

func (g *gate) CreateChat(ctx context.Context, req *dingtalk.CreateChatRequest) (*dingtalk.CreatedChat, error) {
	switch {
	case g.dead():
		return nil, errDead
	case g.holdCreate:
		// The request reaches DingTalk, and the worker dies before the answer.
		_, _ = g.Client.CreateChat(ctx, req)
		return nil, g.hold(ctx)
	}
	return g.Client.CreateChat(ctx, req)
}

func (g *gate) QRCodeLink(ctx context.Context, chatID, userID string) (string, error) {
	switch {
	case g.dead():
		return "", errDead
	case g.holdLink:
		return "", g.hold(ctx)
	}
	return g.Client.QRCodeLink(ctx, chatID, userID)
}

func TestCrashedWorkerIsResumed(t *testing.T) {
	const events = 10
	t.Run("after the group was created", func(t *testing.T) {
		e := newEnv(t, sim.Config{})
		g := newGate(e.client)
		g.holdLink = true
		cfg := testConfig()
		cfg.AckWait = 2 * time.Second
		crashed := e.start(cfg, g)
		for i := range events {
			e.publish("project.created", project(fmt.Sprint(i), "u1"))
		}
		for range events {
			<-g.arrived // every event has its group and waits for its link
		}
		crashed.kill()
		close(g.release)

		e.start(cfg, nil)
		rs := checkAllProvisioned(t, e, events)
		for _, r := range rs {
			if r.PossibleDuplicate {
				t.Errorf("resumed after a recorded create, yet marked a possible duplicate: %s", r.Raw)
			}
		}
		if n := e.sim.Stats().Calls["chat/create"]; n != events {
			t.Errorf("chat/create called %d times for %d events: a resumed event must not create again", n, events)
		}
	})
	t.Run("while the create was in flight", func(t *testing.T) {
		e := newEnv(t, sim.Config{})
		g := newGate(e.client)
		g.holdCreate = true
		cfg := testConfig()
		cfg.AckWait = 2 * time.Second
		crashed := e.start(cfg, g)
		e.publish("project.created", project("inflight", "u1"))
		<-g.arrived
		crashed.kill()
		close(g.release)

		e.start(cfg, nil)
		r := e.results(1)[0]
		if r.Subject != "group.provisioned" || !r.PossibleDuplicate {
			t.Fatalf("a create lost in a crash must be reported as a possible duplicate: %s", r.Raw)
		}
		if st := e.sim.Stats(); st.Duplicates != 1 {
			t.Fatalf("simulator saw %d duplicates, want the 1 the crash caused", st.Duplicates)
		}
	})
}

// kill cuts a worker off the way a crash would: its connection goes away
// with nothing acknowledged or handed back.
func (r *running) kill() { r.js.Conn().Close() }

func TestGracefulShutdownLosesAndDuplicatesNothing(t *testing.T) {
	const events = 100
	e := newEnv(t, sim.Config{Faults: sim.Faults{Latency: 20 * time.Millisecond}})
	first := e.start(testConfig(), nil)
	for i := range events {
		e.publish("project.created", project(fmt.Sprint(i), "u1"))
	}
	e.waitFor("work in flight", func() bool { return e.sim.Stats().GroupsCreated >= 10 })
	first.stop(t)
	created := e.sim.Stats().GroupsCreated
	if created == events {
		t.Log("every event finished before the stop took effect; the test proves less than it could")
	}
	e.start(testConfig(), nil)
	checkAllProvisioned(t, e, events)
}
