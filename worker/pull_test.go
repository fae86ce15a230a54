package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
)

// gapWatch records when each result arrives, to find the longest silence.
type gapWatch struct {
	mu    sync.Mutex
	times []time.Time
}

func watchResults(t *testing.T, nc *nats.Conn) *gapWatch {
	t.Helper()
	g := &gapWatch{}
	sub, err := nc.Subscribe("group.*", func(*nats.Msg) {
		g.mu.Lock()
		g.times = append(g.times, time.Now())
		g.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return g
}

func (g *gapWatch) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.times)
}

// longest is the longest time between two results, and after how many.
func (g *gapWatch) longest() (time.Duration, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var worst time.Duration
	at := 0
	for i := 1; i < len(g.times); i++ {
		if d := g.times[i].Sub(g.times[i-1]); d > worst {
			worst, at = d, i
		}
	}
	return worst, at
}

// A backlog that was waiting before the worker's first start drains with
// no silence: the pull loop never sits idle while events wait (it once sat
// 30 s at a time, a PullMaxMessages(1) iterator's lost pull waiting out its
// heartbeat). Paced, as in production, and unpaced.
func TestBacklogDrainsWithoutStalls(t *testing.T) {
	for _, qps := range []float64{0, 1_000_000} {
		t.Run(fmt.Sprintf("qps=%v", qps), func(t *testing.T) {
			const n = 1500
			e := newEnv(t, sim.Config{})
			ctx := context.Background()
			// The producer's stream, filled before any worker ran.
			if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROVISIONER_EVENTS", Subjects: []string{"project.created", "event.scheduled"}}); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				data, _ := json.Marshal(project(fmt.Sprintf("b%d", i), "m1"))
				if _, err := e.js.PublishAsync("project.created", data); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-e.js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishing the backlog took over 30s")
			}
			watch := watchResults(t, natstest.Connect(t, e.ns))
			cfg := testConfig()
			cfg.Concurrency, cfg.QPS = 64, qps
			e.start(cfg, nil)
			e.waitFor("every result", func() bool { return watch.count() >= n })
			worst, at := watch.longest()
			t.Logf("%d results; the longest gap between two was %v, after %d", n, worst, at)
			if worst > 2*time.Second {
				t.Errorf("results stopped for %v after %d of %d while a backlog remained", worst, at, n)
			}
		})
	}
}
