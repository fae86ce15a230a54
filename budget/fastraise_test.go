package budget_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/budget"
	"provisioner/internal/natstest"
)

// A worker may raise its share at once only when every other live worker
// has published, for the same workers, a share and recent calls within its
// own share among them.
func TestFastRaiseNeedsEveryOtherWorkerWithinItsShare(t *testing.T) {
	abc := []string{"a", "b", "c"} // shares of 20: a 7, b 7, c 6
	for _, tt := range []struct {
		name    string
		records map[string]budget.Record
		gone    time.Duration
		want    bool
	}{
		{"every other worker within its share", map[string]budget.Record{
			"a": {Seen: abc, Share: 7, Recent: 7}, "b": {Seen: abc, Share: 0, Recent: 0}}, 0, true},
		{"one has not published", map[string]budget.Record{
			"a": {Seen: abc, Share: 7, Recent: 3}}, 0, false},
		{"one counted other workers", map[string]budget.Record{
			"a": {Seen: []string{"a", "c"}, Share: 7, Recent: 3}, "b": {Seen: abc, Share: 7}}, 0, false},
		{"one of a release that publishes no workers", map[string]budget.Record{
			"a": {Share: 7}, "b": {Seen: abc, Share: 7}}, 0, false},
		{"one still holds a larger share", map[string]budget.Record{
			"a": {Seen: abc, Share: 10, Recent: 3}, "b": {Seen: abc, Share: 7}}, 0, false},
		{"one sent more than its share in its window", map[string]budget.Record{
			"a": {Seen: abc, Share: 7, Recent: 20}, "b": {Seen: abc, Share: 7}}, 0, false},
		{"a worker left a moment ago", map[string]budget.Record{
			"a": {Seen: abc, Share: 7}, "b": {Seen: abc, Share: 7}}, 100 * time.Millisecond, false},
		{"a worker left long ago", map[string]budget.Record{
			"a": {Seen: abc, Share: 7}, "b": {Seen: abc, Share: 7}}, time.Minute, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := budget.FastRaise("c", 20, abc, tt.records, tt.gone); got != tt.want {
				t.Errorf("fastRaise = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("alone", func(t *testing.T) {
		if budget.FastRaise("c", 20, []string{"c"}, nil, 0) {
			t.Errorf("a worker alone may raise at once; want only by the solo claim or after the raise delay")
		}
	})
}

// frozen is a clock that moves only when told: with it, the raise delay
// never passes, so a raise can only be a fast one.
type frozen struct {
	mu sync.Mutex
	t  time.Time
}

func (c *frozen) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *frozen) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func startFrozen(t *testing.T, js jetstream.JetStream, bucket, id string, clock *frozen) *budget.Pacer {
	t.Helper()
	p, err := budget.StartPacer(context.Background(), js, budget.PacerOptions{Bucket: bucket, ID: id, Limit: 20, Now: clock.Now})
	if err != nil {
		t.Error(err)
		return nil
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

// Workers starting together, none with calls behind it, take their shares
// from each other's published figures at once: a cold start of several
// workers loses no raise delay. The clock never moves, so the slow raise
// cannot be what gets them there.
func TestWorkersStartingTogetherTakeTheirSharesAtOnce(t *testing.T) {
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	clock := &frozen{t: time.Now()}
	pacers := make([]*budget.Pacer, 3)
	var wg sync.WaitGroup
	for i := range pacers {
		wg.Go(func() { pacers[i] = startFrozen(t, js, "together", fmt.Sprintf("w%d", i), clock) })
	}
	wg.Wait()
	if slices.Contains(pacers, nil) {
		t.FailNow()
	}
	waitShares(t, "three started together, the clock stopped", pacers, sorted(6, 7, 7))
}

// A worker joining one that has just spent its whole share waits until
// those calls are out of the window: only then has the busy worker's
// published count come within its new share. The clock moves only by the
// window, less than the raise delay.
func TestAJoinerWaitsForTheCallsOfABusyWorker(t *testing.T) {
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	clock := &frozen{t: time.Now()}
	a := startFrozen(t, js, "busy", "a", clock)
	if a == nil || a.Share() != 20 {
		t.Fatalf("a alone: want a share of 20 at once")
	}
	for range 20 {
		if err := a.Wait(ctx, "create"); err != nil {
			t.Fatal(err)
		}
	}
	b := startFrozen(t, js, "busy", "b", clock)
	if b == nil {
		t.FailNow()
	}
	kv, err := js.KeyValue(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	// a has seen b and published its 20 calls against its new share of 10.
	natstest.Eventually(t, 30*time.Second, "a publishes its calls for a and b", func() bool {
		e, err := kv.Get(ctx, "members.a")
		if err != nil {
			return false
		}
		var m struct {
			Seen   []string `json:"seen"`
			Share  int      `json:"share"`
			Recent int      `json:"recent"`
		}
		return json.Unmarshal(e.Value(), &m) == nil && slices.Equal(m.Seen, []string{"a", "b"}) && m.Share == 10 && m.Recent == 20
	}, func() string { return "not yet" })
	if got := b.Share(); got != 0 {
		t.Fatalf("b took a share of %d while a's 20 calls are in the window", got)
	}
	clock.Advance(budget.DefaultMargin + time.Second + time.Millisecond) // a's calls leave its window
	waitShares(t, "a's calls out of the window", []*budget.Pacer{a, b}, sorted(10, 10))
}
