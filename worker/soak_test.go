package worker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
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

// soakResult is what a soak run measured.
type soakResult struct {
	results, provisioned, flagged int
	duplicates                    int // groups DingTalk holds beyond one per event
	unflagged                     int // events with a second group whose result is not flagged
	sim                           sim.Stats
}

// soak publishes events, runs one worker at a time and kills it kills times
// (its connection cut, its DingTalk calls stopped) while it works, then
// checks that every event has one result and that every real duplicate is flagged.
func soak(tb testing.TB, m mode, simCfg sim.Config, events, kills int) soakResult {
	tb.Helper()
	e := newModeEnv(tb, simCfg, m)
	cfg := testConfig()
	cfg.Concurrency, cfg.AckWait, cfg.RetryBudget = 64, 2*time.Second, time.Hour
	start := func() (*running, *killable) {
		k := &killable{Groups: e.groups}
		return e.start(cfg, k), k
	}
	w, k := start()
	for i := range events {
		body := fmt.Sprintf(`{"id":"soak-%d","project_id":"P-%d","name":"Soak %d","owner":"owner%d","members":["u1","u2","u3"]}`, i, i, i, i)
		if _, err := e.js.PublishAsync("project.created", []byte(body)); err != nil {
			tb.Fatal(err)
		}
	}
	<-e.js.PublishAsyncComplete()
	stored := func() int {
		s, err := e.js.Stream(context.Background(), "PROVISIONER_RESULTS")
		if err != nil {
			tb.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		return int(info.State.Msgs)
	}
	for n := range kills {
		e.waitFor(fmt.Sprintf("results before kill %d", n+1), func() bool { return stored() >= (n+1)*events/(kills+1) })
		w.kill()
		k.dead.Store(true)
		w, k = start()
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

func TestSoakWithKills(t *testing.T) {
	faults := sim.Faults{BusyRate: 0.2, BadGatewayRate: 0.02, LostReplyRate: 0.01, Latency: 2 * time.Millisecond}
	for _, m := range []mode{v1Mode, sceneMode} {
		t.Run(m.name, func(t *testing.T) {
			const events, kills = 600, 3
			r := soak(t, m, sim.Config{Seed: 11, Faults: faults}, events, kills)
			if r.results != events || r.provisioned != events {
				t.Fatalf("%d results, %d provisioned, want %d each", r.results, r.provisioned, events)
			}
			if r.unflagged != 0 {
				t.Errorf("%d events have a second group but no flag", r.unflagged)
			}
			if m.scene && (r.duplicates != 0 || r.flagged != 0) {
				t.Errorf("scene groups: %d duplicates, %d flags; want none", r.duplicates, r.flagged)
			}
			t.Logf("%s: %d events, %d kills: %d flagged, %d real duplicates, %d lost replies, %d 502s",
				m.name, events, kills, r.flagged, r.duplicates, r.sim.LostReplies, r.sim.BadGateways)
		})
	}
}

// BenchmarkSoak is the measurement: 10,000 events, 20% busy, 2%
// HTTP 502 (before the effect), 10 kills, in v1 and scene-group mode; and v1
// without 502s, which leaves only the flags the kills cause.
//
//	go test ./worker -run '^$' -bench Soak -benchtime 1x
func BenchmarkSoak(b *testing.B) {
	for _, tt := range []struct {
		name       string
		m          mode
		badGateway float64
	}{{"v1", v1Mode, 0.02}, {"scene", sceneMode, 0.02}, {"v1-no-502s", v1Mode, 0}} {
		b.Run(tt.name, func(b *testing.B) {
			for range b.N {
				r := soak(b, tt.m, sim.Config{Faults: sim.Faults{BusyRate: 0.2, BadGatewayRate: tt.badGateway, Latency: 2 * time.Millisecond}}, 10_000, 10)
				if r.results != 10_000 || r.unflagged != 0 {
					b.Fatalf("%d results, %d unflagged duplicates", r.results, r.unflagged)
				}
				b.ReportMetric(float64(r.flagged), "flags")
				b.ReportMetric(float64(r.flagged)/10, "flags/kill")
				b.ReportMetric(float64(r.duplicates), "duplicates")
				b.ReportMetric(float64(r.sim.BadGateways), "502s")
			}
		})
	}
}
