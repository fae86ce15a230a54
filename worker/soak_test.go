package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"provisioner/internal/natstest"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/worker"
)

// killable is a worker's DingTalk that dies with it: once killed, no call of
// its reaches DingTalk (one already on the wire still lands, as after a SIGKILL).
type killable struct {
	dingtalk.Groups
	dead atomic.Bool
}

func (k *killable) CreateGroup(ctx context.Context, g *dingtalk.NewGroup) (*dingtalk.Group, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	return k.Groups.CreateGroup(ctx, g)
}

func (k *killable) AddMembers(ctx context.Context, g dingtalk.Group, ids []string) error {
	if k.dead.Load() {
		return errDead
	}
	return k.Groups.AddMembers(ctx, g, ids)
}

func (k *killable) Members(ctx context.Context, g dingtalk.Group) ([]string, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	return k.Groups.Members(ctx, g)
}

func (k *killable) JoinLink(ctx context.Context, g dingtalk.Group, sharer string) (string, error) {
	if k.dead.Load() {
		return "", errDead
	}
	return k.Groups.JoinLink(ctx, g, sharer)
}

func (k *killable) Change(ctx context.Context, g dingtalk.Group, c *dingtalk.Change) error {
	if k.dead.Load() {
		return errDead
	}
	return k.Groups.Change(ctx, g, c)
}

func (k *killable) Disband(ctx context.Context, g dingtalk.Group) error {
	if k.dead.Load() {
		return errDead
	}
	return k.Groups.Disband(ctx, g)
}

func (k *killable) Read(ctx context.Context, g dingtalk.Group) (*dingtalk.GroupState, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	return k.Groups.Read(ctx, g)
}

// relay runs one worker at a time, each on DingTalk calls that die with it.
type relay struct {
	e      *env
	cfg    worker.Config
	groups dingtalk.Groups
	w      *running
	k      *killable
}

func (e *env) startRelay(cfg worker.Config, groups dingtalk.Groups) *relay {
	r := &relay{e: e, cfg: cfg, groups: groups}
	r.start()
	return r
}

func (r *relay) start() {
	r.k = &killable{Groups: r.groups}
	r.w = r.e.start(r.cfg, r.k)
}

// killAt waits until the results stream holds results, then kills the
// worker (its connection cut, its DingTalk calls stopped) and starts another.
func (r *relay) killAt(n, results int) {
	r.e.t.Helper()
	r.e.waitFor(fmt.Sprintf("results before kill %d", n), func() bool { return r.e.stored("PROVISIONER_RESULTS") >= results })
	r.w.kill()
	r.k.dead.Store(true)
	r.start()
}

// soakResult is what a soak run measured.
type soakResult struct {
	results, provisioned, flagged int
	flaggedByKill, flaggedBy502   int // flags by cause, from the worker's log
	duplicates                    int // groups DingTalk holds beyond one per event
	unflagged                     int // events with a second group whose result is not flagged
	sim                           sim.Stats
}

// soak publishes events, runs one worker at a time and kills it kills times
// (its connection cut, its DingTalk calls stopped) while it works, then
// checks that every event has one result and that every real duplicate is flagged.
// The workers share one client capped at qps calls per second per API (0: none).
func soak(tb testing.TB, m mode, simCfg sim.Config, qps float64, events, kills int) soakResult {
	tb.Helper()
	e := newModeEnv(tb, simCfg, m)
	_, groups := e.newGroups(qps)
	cfg := testConfig()
	cfg.Concurrency, cfg.AckWait, cfg.RetryBudget = 64, 2*time.Second, time.Hour
	r := e.startRelay(cfg, groups)
	for i := range events {
		body := fmt.Sprintf(`{"id":"soak-%d","project_id":"P-%d","name":"Soak %d","owner":"owner%d","members":["u1","u2","u3"]}`, i, i, i, i)
		if _, err := e.js.PublishAsync("project.created", []byte(body)); err != nil {
			tb.Fatal(err)
		}
	}
	<-e.js.PublishAsyncComplete()
	for n := range kills {
		r.killAt(n+1, (n+1)*events/(kills+1))
	}
	rs := e.results(events)
	out := soakResult{results: len(rs), sim: e.sim.Stats()}
	flagged := map[string]bool{}
	for _, r := range rs {
		if r.Subject == "group.provisioned" {
			out.provisioned++
		}
		if r.PossibleDuplicate {
			out.flagged++
			flagged[r.Name] = true
		}
	}
	out.flaggedByKill, out.flaggedBy502 = flagCauses(tb, e.logs.Lines())
	perName := map[string]int{}
	for _, g := range e.sim.Groups() {
		perName[g.Name]++
	}
	for name, n := range perName {
		out.duplicates += n - 1
		if n > 1 && !flagged[name] {
			out.unflagged++
		}
	}
	return out
}

// flagCauses counts the flagged events in a worker log by what left their
// first create unanswered: a worker that stopped with it on the wire, or an
// answer without a DingTalk code (a 502 page).
func flagCauses(tb testing.TB, log []string) (byKill, by502 int) {
	tb.Helper()
	seen := map[string]bool{}
	for _, line := range log {
		var l struct {
			Msg     string `json:"message"`
			EventID string `json:"event_id"`
			Flagged bool   `json:"possible_duplicate"`
			Why     string `json:"possible_duplicate_why"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || !strings.HasPrefix(l.Msg, "group provisioned") && !strings.HasPrefix(l.Msg, "event already handled") || !l.Flagged || seen[l.EventID] {
			continue
		}
		seen[l.EventID] = true
		switch {
		case strings.Contains(l.Why, "on the wire"):
			byKill++
		case strings.Contains(l.Why, "HTTP 502"):
			by502++
		default:
			tb.Errorf("event %s flagged for an unexpected reason: %q", l.EventID, l.Why)
		}
	}
	return byKill, by502
}

func TestSoakWithKills(t *testing.T) {
	natstest.Long(t)
	faults := sim.Faults{BusyRate: 0.2, BadGatewayRate: 0.02, LostReplyRate: 0.01, Latency: 2 * time.Millisecond}
	for _, m := range []mode{v1Mode, sceneMode} {
		t.Run(m.name, func(t *testing.T) {
			const events, kills = 600, 3
			r := soak(t, m, sim.Config{Seed: 11, Faults: faults}, 0, events, kills)
			if r.results != events || r.provisioned != events {
				t.Fatalf("%d results, %d provisioned, want %d each", r.results, r.provisioned, events)
			}
			if r.unflagged != 0 {
				t.Errorf("%d events have a second group but no flag", r.unflagged)
			}
			if r.flaggedByKill+r.flaggedBy502 != r.flagged {
				t.Errorf("%d flags, of which %d by kills and %d by 502s: every flag must say why", r.flagged, r.flaggedByKill, r.flaggedBy502)
			}
			if m.scene && (r.duplicates != 0 || r.flagged != 0) {
				t.Errorf("scene groups: %d duplicates, %d flags; want none", r.duplicates, r.flagged)
			}
			t.Logf("%s: %d events, %d kills: %d flagged (%d by kills, %d by 502s), %d real duplicates, %d lost replies, %d 502s",
				m.name, events, kills, r.flagged, r.flaggedByKill, r.flaggedBy502, r.duplicates, r.sim.LostReplies, r.sim.BadGateways)
		})
	}
}

// BenchmarkSoak is the measurement: 10,000 events, 20% busy, 2%
// HTTP 502 (before the effect), 10 kills, in v1 and scene-group mode. A kill
// can only leave a flag on the creates then on the wire, which are about the
// create rate times DingTalk's latency: "paced" runs at 200 calls/s per API
// with 8 ms latency, as many on the wire as 20 calls/s (the standard
// edition's limit) with 80 ms, in a tenth of the time; "unpaced" has no rate
// limit and 64 events in flight, the worst case. A 502 before the effect
// flags its event in v1 mode whatever the kills: DingTalk may have acted.
//
//	go test ./worker -run '^$' -bench Soak -benchtime 1x
func BenchmarkSoak(b *testing.B) {
	const events, kills = 10_000, 10
	for _, tt := range []struct {
		name    string
		m       mode
		qps     float64
		latency time.Duration
	}{
		{"v1/paced", v1Mode, 200, 8 * time.Millisecond},
		{"scene/paced", sceneMode, 200, 8 * time.Millisecond},
		{"v1/unpaced", v1Mode, 0, 2 * time.Millisecond},
	} {
		b.Run(tt.name, func(b *testing.B) {
			for range b.N {
				faults := sim.Faults{BusyRate: 0.2, BadGatewayRate: 0.02, Latency: tt.latency}
				r := soak(b, tt.m, sim.Config{Faults: faults}, tt.qps, events, kills)
				if r.results != events || r.unflagged != 0 {
					b.Fatalf("%d results, %d unflagged duplicates", r.results, r.unflagged)
				}
				b.ReportMetric(float64(r.flagged), "flags")
				b.ReportMetric(float64(r.flaggedByKill)/kills, "kill-flags/kill")
				b.ReportMetric(float64(r.flaggedBy502), "502-flags")
				b.ReportMetric(float64(r.duplicates), "duplicates")
				b.ReportMetric(float64(r.sim.Calls[tt.m.create]), "creates")
			}
		})
	}
}
