package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"provisioner/internal/natstest"

	"provisioner/budget"
	"provisioner/dingtalk/sim"
)

// pacedRun is what a run of workers sharing the per-second budget measured.
type pacedRun struct {
	elapsed        time.Duration // from the first event published to the last result
	calls, refused int           // DingTalk calls (tokens aside), and those refused for QPS
	results        int
}

// paced publishes events to workers that share qps calls per second per API,
// against a simulator counting the same limit as model says; with kill, one
// of them is killed when a third of the results are in.
func paced(tb testing.TB, model sim.QPSModel, workers, events, qps int, latency, jitter time.Duration, kill bool) pacedRun {
	tb.Helper()
	e := newEnv(tb, sim.Config{Faults: sim.Faults{QPS: qps, QPSModel: model, Latency: latency, Jitter: jitter}})
	cfg := testConfig()
	cfg.QPS, cfg.Concurrency = float64(qps), 64
	var victim *running
	var victimGroups *killable
	for i := range workers {
		k := &killable{Groups: e.groups}
		r := e.start(cfg, k)
		if i == 0 {
			victim, victimGroups = r, k
		}
	}
	e.waitFor("every worker's share of the budget", func() bool {
		shared := map[string]bool{}
		for _, l := range e.logs.Lines() {
			var line struct{ Instance, Message string }
			if json.Unmarshal([]byte(l), &line) == nil && strings.HasPrefix(line.Message, "this worker's share") {
				shared[line.Instance] = true
			}
		}
		return len(shared) == workers
	})
	start := time.Now()
	for i := range events {
		body := fmt.Sprintf(`{"id":"pace-%d","project_id":"P-%d","name":"Pace %d","owner":"owner%d","members":["u1"]}`, i, i, i, i)
		if _, err := e.js.PublishAsync("project.created", []byte(body)); err != nil {
			tb.Fatal(err)
		}
	}
	<-e.js.PublishAsyncComplete()
	if kill {
		e.waitFor("a third of the results", func() bool { return e.sim.Stats().Calls[e.mode.link] >= events/3 })
		victim.kill()
		victimGroups.dead.Store(true)
	}
	rs := e.readStreamWithin("PROVISIONER_RESULTS", events, 5*time.Minute)
	out := pacedRun{elapsed: time.Since(start), results: len(rs)}
	st := e.sim.Stats()
	for api, n := range st.Calls {
		if api != e.mode.tokenAPI {
			out.calls += n
		}
	}
	out.refused = st.RateLimited
	return out
}

// Three workers share one app's budget under each way DingTalk may count it:
// every event done, hardly a call refused.
func TestWorkersShareThePerSecondBudget(t *testing.T) {
	natstest.Long(t)
	for _, tt := range []struct {
		model sim.QPSModel
		kill  bool
	}{{sim.PerSecond, false}, {sim.Sliding, false}, {sim.HalfSeconds, false}, {sim.TokenBucket, false}, {sim.PerSecond, true}} {
		t.Run(fmt.Sprintf("%s/kill=%v", tt.model, tt.kill), func(t *testing.T) {
			const events = 150
			r := paced(t, tt.model, 3, events, 50, 5*time.Millisecond, 5*time.Millisecond, tt.kill)
			if r.results != events {
				t.Fatalf("%d results, want %d", r.results, events)
			}
			// Timing on a loaded test machine is rough: allow 2%; the
			// benchmark measures the real figure.
			if r.refused*50 > r.calls {
				t.Errorf("%d of %d calls refused for QPS", r.refused, r.calls)
			}
			t.Logf("%d calls, %d refused, %v", r.calls, r.refused, r.elapsed.Round(time.Millisecond))
		})
	}
}

// BenchmarkSharedBudget is the measurement: 1,000 events, DingTalk
// limiting each API to 20 calls a second and answering after 80 ms plus up to
// 20 ms of jitter, for 1 and 3 workers under each counting model, and 3
// workers with one killed a third of the way. The budget allows 50 s
// (1,000 calls on each API at 20/s); "budget-used-%" is 50 s over the time
// taken, from the first event published to the last result.
//
//	go test ./worker -run '^$' -bench SharedBudget -benchtime 1x
func BenchmarkSharedBudget(b *testing.B) {
	type run struct {
		workers int
		model   sim.QPSModel
		kill    bool
	}
	var runs []run
	for _, w := range []int{1, 3} {
		for _, m := range []sim.QPSModel{sim.PerSecond, sim.Sliding, sim.HalfSeconds, sim.TokenBucket} {
			runs = append(runs, run{w, m, false})
		}
	}
	runs = append(runs, run{3, sim.PerSecond, true}, run{3, sim.Sliding, true})
	for _, r := range runs {
		b.Run(fmt.Sprintf("workers=%d/%s/kill=%v", r.workers, r.model, r.kill), func(b *testing.B) {
			for range b.N {
				const events, qps = 1000, 20
				got := paced(b, r.model, r.workers, events, qps, 80*time.Millisecond, 20*time.Millisecond, r.kill)
				if got.results != events {
					b.Fatalf("%d results, want %d", got.results, events)
				}
				b.ReportMetric(100*float64(events)/qps/got.elapsed.Seconds(), "budget-used-%")
				b.ReportMetric(100*float64(got.refused)/float64(got.calls), "refused-%")
				b.ReportMetric(got.elapsed.Seconds(), "s")
			}
		})
	}
}

// An IP ban seen by one worker stops every worker's calls to every API
// until it ends: only the calls already on their way meet it.
func TestIPBanHoldsEveryWorker(t *testing.T) {
	natstest.Long(t)
	const events, qps = 100, 50
	e := newEnv(t, sim.Config{Faults: sim.Faults{QPS: qps, Latency: 5 * time.Millisecond}})
	cfg := testConfig()
	cfg.QPS = qps
	for range 3 {
		e.start(cfg, nil)
	}
	for i := range events {
		e.publish("project.created", project(fmt.Sprint(i), "u1"))
	}
	e.waitFor("a third of the results", func() bool { return e.sim.Stats().Calls[e.mode.link] >= events/3 })
	e.sim.Ban(time.Second)
	checkAllProvisioned(t, e, events)
	// A second of calls at the limit on both APIs would be about 100; held,
	// only those released before the first answer came back are banned.
	st := e.sim.Stats()
	t.Logf("%d calls met the ban", st.Banned)
	if st.Banned == 0 || st.Banned > 25 {
		t.Errorf("%d calls met the ban, want a few", st.Banned)
	}
	kv, err := e.js.KeyValue(context.Background(), "provisioner_budget_pace")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), "hold."+budget.AllAPIs); err != nil {
		t.Errorf("no hold of every API was published: %v", err)
	}
}
