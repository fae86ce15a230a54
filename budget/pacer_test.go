package budget_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/budget"
	"provisioner/internal/natstest"
)

func startPacer(t *testing.T, js jetstream.JetStream, id string) *budget.Pacer {
	t.Helper()
	p, err := budget.StartPacer(context.Background(), js, budget.PacerOptions{Bucket: "pace", ID: id, Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

// waitShares polls the pacers until want(shares) holds, checking on every
// look that the shares never add up to more than the limit.
//
// One look reads the pacers one after another, then again in the reverse
// order, and keeps each one's lower share: a worker may raise a moment
// after another lowered (a fast raise), and a single pass could read the
// second before the lowering and the first after the raise. A sum that
// held over the whole look still shows.
func waitShares(t *testing.T, what string, pacers []*budget.Pacer, want func([]int) bool) {
	t.Helper()
	var shares []int
	natstest.Eventually(t, 30*time.Second, what, func() bool {
		shares = make([]int, len(pacers))
		for i, p := range pacers {
			shares[i] = p.Status().Share
		}
		sum := 0
		for i := len(pacers) - 1; i >= 0; i-- {
			shares[i] = min(shares[i], pacers[i].Status().Share)
			sum += shares[i]
		}
		if sum > 20 {
			t.Fatalf("%s: shares %v add up to %d, more than the limit of 20", what, shares, sum)
		}
		return want(shares)
	}, func() string { return fmt.Sprintf("shares still %v", shares) })
}

// sorted wants the shares, in any order.
func sorted(want ...int) func([]int) bool {
	return func(got []int) bool {
		got = slices.Clone(got)
		slices.Sort(got)
		return slices.Equal(got, want)
	}
}

// Workers joining and leaving re-divide the limit; at no moment do the
// shares add up to more than it.
func TestPacersShareTheLimit(t *testing.T) {
	natstest.Long(t)
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	a, b := startPacer(t, js, "a"), startPacer(t, js, "b")
	waitShares(t, "two workers", []*budget.Pacer{a, b}, sorted(10, 10))
	c := startPacer(t, js, "c")
	waitShares(t, "a third joins", []*budget.Pacer{a, b, c}, sorted(6, 7, 7))
	b.Stop(context.Background())
	waitShares(t, "one leaves", []*budget.Pacer{a, c}, sorted(10, 10))
	if st := a.Status(); st.Workers != 2 || st.Degraded {
		t.Errorf("a's view: %+v", st)
	}
}

// A rate-limit answer seen by one worker holds its API for the others too;
// an IP ban holds every API.
func TestHoldsReachEveryWorker(t *testing.T) {
	natstest.Long(t)
	tests := []struct {
		name       string
		hold       string
		held, free []string
	}{
		{"rate limit", "chat/create", []string{"chat/create"}, []string{"topapi/chat/qrcode/get"}},
		{"IP ban", budget.AllAPIs, []string{"chat/create", "topapi/chat/qrcode/get"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
			if err != nil {
				t.Fatal(err)
			}
			a, b := startPacer(t, js, "a"), startPacer(t, js, "b")
			waitShares(t, "two workers", []*budget.Pacer{a, b}, sorted(10, 10))
			ctx := context.Background()
			until := time.Now().Add(time.Second)
			if err := a.Hold(ctx, tt.hold, until); err != nil {
				t.Fatal(err)
			}
			natstest.Eventually(t, 10*time.Second, "b to see the hold", func() bool { return !b.Status().Holds[tt.hold].IsZero() }, nil)
			for _, api := range tt.free {
				if err := b.Wait(ctx, api); err != nil {
					t.Fatal(err)
				}
				if time.Now().After(until) {
					t.Errorf("b's call to %s, not held, waited for the hold", api)
				}
			}
			for _, api := range tt.held {
				if err := b.Wait(ctx, api); err != nil {
					t.Fatal(err)
				}
				if now := time.Now(); now.Before(until) {
					t.Errorf("b called %s %v before the hold ended", api, until.Sub(now))
				}
			}
		})
	}
}

// A worker that cannot reach NATS keeps to a share that leaves room for one
// worker it cannot see, rather than stop or keep its whole share.
func TestPacerFallsBackWhenNATSIsGone(t *testing.T) {
	natstest.Long(t)
	nc := natstest.Connect(t, natstest.Server(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	a := startPacer(t, js, "a")
	waitShares(t, "alone", []*budget.Pacer{a}, sorted(20))
	nc.Close()
	waitShares(t, "NATS gone", []*budget.Pacer{a}, sorted(10))
	if st := a.Status(); !st.Degraded {
		t.Errorf("status %+v, want degraded", st)
	}
	if err := a.Wait(context.Background(), "chat/create"); err != nil {
		t.Errorf("a degraded worker still calls: %v", err)
	}
}

// A worker that starts alone calls at the whole limit at once; workers
// that start together never hold more than the limit between them, and
// end with fair shares.
func TestAWorkerAloneTakesTheWholeLimitAtOnce(t *testing.T) {
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for round := range 5 {
		bucket := fmt.Sprintf("pace%d", round)
		start := func(id string) *budget.Pacer {
			p, err := budget.StartPacer(ctx, js, budget.PacerOptions{Bucket: bucket, ID: id, Limit: 20})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Stop(ctx) })
			return p
		}
		if round == 0 {
			a := start("a")
			if got := a.Share(); got != 20 {
				t.Fatalf("a worker alone has a share of %d as it starts, want 20", got)
			}
			continue
		}
		pacers := make([]*budget.Pacer, 3)
		var wg sync.WaitGroup
		for i := range pacers {
			wg.Go(func() { pacers[i] = start(fmt.Sprintf("w%d", i)) })
		}
		wg.Wait()
		first := 0
		for _, p := range pacers {
			first += p.Share()
		}
		if first > 20 {
			t.Fatalf("round %d: three workers starting together hold %d between them at once", round, first)
		}
		waitShares(t, fmt.Sprintf("round %d: three started together", round), pacers, sorted(6, 7, 7))
	}
}

// The window's margin follows how much an API's answer times vary, once
// enough are seen: narrower than the default for a steady DingTalk, wider
// for an erratic one, and the default for an API not yet observed.
func TestTheWindowFollowsTheAnswerTimes(t *testing.T) {
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	p := startPacer(t, js, "m")
	for i := range 64 {
		p.Observe("steady", 80*time.Millisecond+time.Duration(i%21)*time.Millisecond) // 80–100 ms
		p.Observe("erratic", time.Duration(50+i*3)*time.Millisecond)                  // 50–239 ms
	}
	p.Observe("few", 80*time.Millisecond)
	for _, tt := range []struct {
		api  string
		want time.Duration
	}{{"steady", time.Second + 25*time.Millisecond}, {"erratic", time.Second + 194*time.Millisecond}, {"few", time.Second + budget.DefaultMargin}} {
		if got := budget.WindowOf(p, tt.api); got != tt.want {
			t.Errorf("%s: window %v, want %v", tt.api, got, tt.want)
		}
	}
}

// A worker that starts just after another left takes the slow start: the
// one that left may still have calls in DingTalk's last second.
func TestAWorkerStartingAsAnotherLeavesStartsSlowly(t *testing.T) {
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := budget.StartPacer(ctx, js, budget.PacerOptions{Bucket: "left", ID: "a", Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	a.Stop(ctx)
	b, err := budget.StartPacer(ctx, js, budget.PacerOptions{Bucket: "left", ID: "b", Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(ctx) })
	if got := b.Share(); got != 0 {
		t.Fatalf("a worker starting as another left has a share of %d at once, want 0 (the slow start)", got)
	}
	waitShares(t, "b alone after the slow start", []*budget.Pacer{b}, sorted(20))
}
