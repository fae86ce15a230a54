package worker_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"provisioner/dingtalk/sim"
	"provisioner/worker"
)

// BenchmarkDrainBacklog measures one worker draining a backlog of 10,000
// events against the simulator at zero latency (everything in one process:
// nats-server, simulator and worker).
//
//	go test ./worker -run '^$' -bench DrainBacklog -benchtime 1x
func BenchmarkDrainBacklog(b *testing.B) {
	const events = 10_000
	for range b.N {
		e := newEnv(b, sim.Config{})
		cfg := worker.Config{QPS: 1_000_000} // paced, as in production, with a budget it never reaches
		w := e.start(cfg, nil)               // creates the streams; the backlog is published while it idles
		w.stop(b)
		publishBacklog(b, e, events)
		start := time.Now()
		e.start(cfg, nil)
		e.waitFor("the backlog drained", func() bool { return e.sim.Stats().Calls[e.mode.link] >= events && e.pending() == 0 })
		elapsed := time.Since(start)
		st := e.sim.Stats()
		b.ReportMetric(events/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(st.Calls[e.mode.create]+st.Calls[e.mode.link]+st.Calls[e.mode.add])/events, "calls/event")
		b.ReportMetric(float64(st.Calls[e.mode.tokenAPI]), "token-fetches")
		b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
	}
}

// BenchmarkRateLimited measures 1,000 events with the client capped at 20
// calls per second per API and the simulator refusing more than 20 per
// second per API, with 80 ms latency: the limit allows 50 s.
//
//	go test ./worker -run '^$' -bench RateLimited -benchtime 1x
func BenchmarkRateLimited(b *testing.B) {
	const events = 1000
	for range b.N {
		e := newEnv(b, sim.Config{Faults: sim.Faults{QPS: 20, Latency: 80 * time.Millisecond}})
		_, client := e.newGroups(20)
		w := e.start(worker.Config{}, client)
		w.stop(b)
		publishBacklog(b, e, events)
		start := time.Now()
		e.start(worker.Config{}, client)
		e.waitFor("all events provisioned", func() bool { return e.sim.Stats().Calls[e.mode.link] >= events && e.pending() == 0 })
		elapsed := time.Since(start)
		st := e.sim.Stats()
		b.ReportMetric(elapsed.Seconds(), "s")
		b.ReportMetric(elapsed.Seconds()/50, "x-of-50s")
		b.ReportMetric(float64(st.RateLimited), "rate-limited")
	}
}

func publishBacklog(b *testing.B, e *env, n int) {
	b.Helper()
	for i := range n {
		body := fmt.Sprintf(`{"id":"bench-%d","project_id":"P-%d","name":"Project %d","owner":"owner%d","members":["u1","u2","u3"]}`, i, i, i, i)
		if _, err := e.js.PublishAsync("project.created", []byte(body)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		b.Fatal("publishing the backlog timed out")
	}
}

// peakRSSMiB reads the process's peak resident set (VmHWM) on Linux.
func peakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
