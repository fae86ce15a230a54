package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"provisioner/internal/natstest"

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
	apiCalls := st.Calls[e.mode.create] + st.Calls[e.mode.link]
	attempts := 0
	for _, r := range rs {
		attempts += r.Attempts
	}
	// Every call is either one that worked (2 per event) or an injected busy answer.
	if apiCalls != 2*events+st.Busy-(st.Calls[e.mode.tokenAPI]-st.TokensIssued) || attempts != apiCalls {
		t.Errorf("%d API calls, %d busy answers, %d attempts reported: they must add up", apiCalls, st.Busy, attempts)
	}
	t.Logf("30%% busy: %.2f DingTalk calls per event (%d busy answers), token fetches %d", float64(apiCalls)/events, st.Busy, st.Calls[e.mode.tokenAPI])
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
		e.publish("event.scheduled", map[string]any{"id": fmt.Sprint(i), "event_id": fmt.Sprint("E-", i), "title": fmt.Sprint("t", i), "organizer": "o",
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
	if r.Subject != "group.failed" || r.Error.Reason != messages.ReasonRetriesExhausted || r.Attempts < 2 || r.Error.DingTalkCode == "" {
		t.Fatalf("result: %s", r.Raw)
	}
	dead := e.readStream("PROVISIONER_DEAD_LETTERS", 1)
	if dead[0].Subject != "provisioner.dead_letter.project.created" {
		t.Fatalf("dead letter on %s", dead[0].Subject)
	}
	e.waitFor("the message settled", func() bool { return e.pending() == 0 })
}

// counting wraps the groups and counts the creates one worker makes.
type counting struct {
	dingtalk.Groups
	creates atomic.Int32
}

func (c *counting) CreateGroup(ctx context.Context, g *dingtalk.NewGroup) (*dingtalk.Group, error) {
	c.creates.Add(1)
	return c.Groups.CreateGroup(ctx, g)
}

func TestTwoWorkersShareOneConsumer(t *testing.T) {
	const events = 200
	e := newEnv(t, sim.Config{Faults: sim.Faults{Latency: 2 * time.Millisecond, BusyRate: 0.1}, Seed: 3})
	a, b := &counting{Groups: e.groups}, &counting{Groups: e.groups}
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
// chosen point. Once released, its worker counts as dead: every call fails
// without reaching DingTalk.
type gate struct {
	dingtalk.Groups
	holdCreate     bool // the create reaches DingTalk, then the worker dies
	holdBeforeSend bool // the worker dies before its create leaves (waiting for the rate limiter, say)
	holdAdd        bool // a batch of members reaches DingTalk, then the worker dies
	holdLink       bool
	holdChange     bool // a change reaches DingTalk, then the worker dies
	arrived        chan struct{}
	release        chan struct{}
}

var errDead = &dingtalk.Error{API: "gate", Class: dingtalk.Transient, ErrMsg: "this worker is dead"}

func newGate(g dingtalk.Groups) *gate {
	return &gate{Groups: g, arrived: make(chan struct{}, 1000), release: make(chan struct{})}
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

func (g *gate) CreateGroup(ctx context.Context, n *dingtalk.NewGroup) (*dingtalk.Group, error) {
	switch {
	case g.dead():
		return nil, errDead
	case g.holdBeforeSend:
		return nil, g.hold(ctx)
	case g.holdCreate:
		_, _ = g.Groups.CreateGroup(ctx, n)
		return nil, g.hold(ctx)
	}
	return g.Groups.CreateGroup(ctx, n)
}

func (g *gate) AddMembers(ctx context.Context, grp dingtalk.Group, ids []string) error {
	switch {
	case g.dead():
		return errDead
	case g.holdAdd:
		_ = g.Groups.AddMembers(ctx, grp, ids)
		return g.hold(ctx)
	}
	return g.Groups.AddMembers(ctx, grp, ids)
}

func (g *gate) Change(ctx context.Context, grp dingtalk.Group, c *dingtalk.Change) error {
	switch {
	case g.dead():
		return errDead
	case g.holdChange:
		_ = g.Groups.Change(ctx, grp, c)
		return g.hold(ctx)
	}
	return g.Groups.Change(ctx, grp, c)
}

func (g *gate) JoinLink(ctx context.Context, grp dingtalk.Group, sharer string) (string, error) {
	switch {
	case g.dead():
		return "", errDead
	case g.holdLink:
		return "", g.hold(ctx)
	}
	return g.Groups.JoinLink(ctx, grp, sharer)
}

func TestCrashedWorkerIsResumed(t *testing.T) {
	natstest.Long(t)
	const events = 10
	t.Run("after the group was created", func(t *testing.T) {
		e := newEnv(t, sim.Config{})
		g := newGate(e.groups)
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
		if n := e.sim.Stats().Calls[e.mode.create]; n != events {
			t.Errorf("%s called %d times for %d events: a resumed event must not create again", e.mode.create, n, events)
		}
	})
	// Where the worker dies decides whether a second create may duplicate the
	// group: only a create that was on the wire is suspect, and never a scene
	// group's, which DingTalk de-duplicates by uuid.
	tests := []struct {
		name      string
		mode      mode
		simCfg    sim.Config
		hold      func(*gate)
		flagged   bool
		groups    int
		outcome   string // the result's subject or failure reason
		duplicate int    // duplicates the simulator saw
	}{
		{"v1: while the create was on the wire", v1Mode, sim.Config{}, func(g *gate) { g.holdCreate = true }, true, 2, "group.provisioned", 1},
		{"legacy: while the create was on the wire", legacyMode, sim.Config{}, func(g *gate) { g.holdCreate = true }, true, 2, "group.provisioned", 1},
		{"v1: before the create was sent", v1Mode, sim.Config{}, func(g *gate) { g.holdBeforeSend = true }, false, 1, "group.provisioned", 0},
		{"scene: while the create was on the wire", sceneMode, sim.Config{}, func(g *gate) { g.holdCreate = true }, false, 1, "group.provisioned", 0},
		{"scene, repeated uuid refused: while the create was on the wire", sceneMode, sim.Config{RefuseRepeatedUUID: true},
			func(g *gate) { g.holdCreate = true }, false, 1, messages.ReasonOutcomeUnknown, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newModeEnv(t, tt.simCfg, tt.mode)
			g := newGate(e.groups)
			tt.hold(g)
			cfg := testConfig()
			cfg.AckWait = 2 * time.Second
			crashed := e.start(cfg, g)
			e.publish("project.created", project("inflight", "u1"))
			<-g.arrived
			crashed.kill()
			close(g.release)

			e.start(cfg, nil)
			r := e.results(1)[0]
			outcome := r.Subject
			if r.Error != nil {
				outcome = r.Error.Reason
			}
			if outcome != tt.outcome || r.PossibleDuplicate != tt.flagged {
				t.Fatalf("result %s: want %s, possible duplicate %v", r.Raw, tt.outcome, tt.flagged)
			}
			if r.Error != nil && !strings.Contains(r.Error.Message, "probably exists") {
				t.Errorf("outcome_unknown must say the group probably exists: %s", r.Error.Message)
			}
			if st := e.sim.Stats(); st.GroupsCreated != tt.groups || st.Duplicates != tt.duplicate {
				t.Fatalf("simulator: %d groups, %d duplicates; want %d and %d", st.GroupsCreated, st.Duplicates, tt.groups, tt.duplicate)
			}
		})
	}
}

// A worker that dies in the backoff wait after DingTalk refused its create
// (a refusal: nothing took effect) leaves no suspicion behind.
func TestCrashInBackoffAfterARefusalIsNotFlagged(t *testing.T) {
	natstest.Long(t)
	e := newEnv(t, sim.Config{})
	cfg := testConfig()
	cfg.AckWait, cfg.InitialBackoff, cfg.MaxBackoff, cfg.RetryBudget = 2*time.Second, time.Hour, time.Hour, 2*time.Hour
	crashed := e.start(cfg, nil)
	e.publish("project.created", project("warm-up", "u1")) // the token is fetched before the busy answers begin
	e.results(1)
	e.sim.SetFaults(sim.Faults{BusyRate: 1})
	e.publish("project.created", project("refused", "u1"))
	e.waitFor("a refused create recorded as not on the wire", func() bool {
		step, ok := e.step("project.created", "refused", "P-refused")
		return ok && e.sim.Stats().Busy >= 1 && !bytes.Contains(step, []byte(`"create_in_flight":true`))
	})
	crashed.kill()
	e.sim.SetFaults(sim.Faults{})
	e.start(testConfig(), nil)
	r := e.results(2)[1]
	if r.SourceID != "refused" || r.Subject != "group.provisioned" || r.PossibleDuplicate {
		t.Fatalf("result %s: a refused create must not make the next one suspect", r.Raw)
	}
}

// A batch of members that reached DingTalk before its worker died is resumed
// by reading the group and adding only the missing, even where DingTalk
// refuses to add someone already in the group.
func TestResumedBatchAddsOnlyTheMissing(t *testing.T) {
	natstest.Long(t)
	// (Scene groups take all of DingTalk's 1000 members at create: they never add.)
	for _, m := range []mode{legacyMode, v1Mode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{RefuseExistingMembers: true}, m)
			g := newGate(e.groups)
			g.holdAdd = true
			cfg := testConfig()
			cfg.AckWait = 2 * time.Second
			crashed := e.start(cfg, g)
			const n = 130 - 1 // besides the owner: a create of 40, then batches
			e.publish("project.created", project("big", members("m", n)...))
			<-g.arrived
			crashed.kill()
			close(g.release)

			e.start(cfg, nil)
			r := e.results(1)[0]
			grp, _ := e.sim.Group(r.ChatID)
			if r.Subject != "group.provisioned" || len(grp.Members) != n+1 || r.MemberCount != n+1 {
				t.Fatalf("result %s; the group has %d members, want %d", r.Raw, len(grp.Members), n+1)
			}
			if reads := e.sim.Stats().Calls[m.read]; reads != 1 {
				t.Errorf("%s called %d times, want 1 (once, on resuming the batch)", m.read, reads)
			}
		})
	}
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
