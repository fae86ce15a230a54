package dingtalk

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"provisioner/dingtalk/sim"
)

// TestQPSCapKeepsInsideTheSimulatorsLimit sends a burst from many goroutines
// through a client capped a little under the simulator's limit: nothing is
// refused. (The margin is for the way from the client to the simulator: on
// a loaded machine a call released at the end of one second can arrive in
// the next, as on a real network; at the same cap, a run under -race with
// every package at once once saw one refusal.)
func TestQPSCapKeepsInsideTheSimulatorsLimit(t *testing.T) {
	const qps = 50
	c, s := setup(t, sim.Config{}, func(o *Options) { o.QPS = qps * 4 / 5 })
	chat := mustCreate(t, c)
	s.SetFaults(sim.Faults{QPS: qps})
	var wg sync.WaitGroup
	for range 2 * qps {
		wg.Go(func() {
			if _, err := c.GetChat(context.Background(), chat); err != nil {
				t.Errorf("GetChat: %v", err)
			}
		})
	}
	wg.Wait()
	if n := s.Stats().RateLimited; n != 0 {
		t.Fatalf("%d calls refused for QPS, want 0", n)
	}
}

func TestLimiterSlowsDownAndRecovers(t *testing.T) {
	now := time.Now()
	l := newLimiters(20, func() time.Time { return now })
	a := l.get("chat/create")
	if a != l.get("chat/create") || a == l.get("chat/get") {
		t.Fatal("limiters must be one per API")
	}
	a.slowDown(0)
	if got := a.lim.Limit(); got != 10 {
		t.Fatalf("after one rate-limit answer: %v/s, want 10", got)
	}
	for range 10 {
		a.slowDown(0)
	}
	if got := a.lim.Limit(); got != 1 {
		t.Fatalf("floor: %v/s, want 1", got)
	}
	for range 30 {
		a.succeeded()
	}
	if got := a.lim.Limit(); got != rate.Limit(20) {
		t.Fatalf("after successes: %v/s, want back to 20", got)
	}
	a.slowDown(3 * time.Second)
	if !a.pausedUntil.Equal(now.Add(3 * time.Second)) {
		t.Fatalf("pausedUntil = %v, want now+3s", a.pausedUntil)
	}
	if newLimiters(0, time.Now).get("x") != nil {
		t.Fatal("QPS 0 must mean no limiter")
	}
}
