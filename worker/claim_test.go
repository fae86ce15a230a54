package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/natstest"
)

func testBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	_, kv := natstest.Bucket(t, "claims")
	return kv
}

func TestOnlyOneDeliveryHoldsAnEvent(t *testing.T) {
	kv := testBucket(t)
	ctx := context.Background()
	clk := &natstest.Clock{}
	const lease = 10 * time.Second

	// Ten deliveries of one event at once: exactly one holds it.
	var wg sync.WaitGroup
	results := make(chan claimResult, 10)
	for i := range 10 {
		wg.Go(func() {
			r, err := acquire(ctx, kv, "k", record{Holder: string(rune('a' + i))}, lease, clk.Now)
			if err != nil {
				t.Errorf("acquire: %v", err)
			}
			results <- r
		})
	}
	wg.Wait()
	close(results)
	var holder *claim
	for r := range results {
		switch {
		case r.claim != nil && holder == nil:
			holder = r.claim
		case r.claim != nil:
			t.Fatal("two deliveries hold the same event")
		case r.heldFor <= 0 || r.heldFor > lease:
			t.Fatalf("a refused delivery should wait out the lease, got %v", r.heldFor)
		}
	}
	if holder == nil {
		t.Fatal("nobody holds the event")
	}
	if err := holder.update(ctx, func(r *record) { r.Step, r.ChatID = stepCreated, "chat1" }); err != nil {
		t.Fatal(err)
	}

	// The holder stalls past its lease: the next delivery takes over where it stopped.
	clk.Advance(lease + time.Second)
	next, err := acquire(ctx, kv, "k", record{Holder: "z"}, lease, clk.Now)
	if err != nil || next.claim == nil || !next.tookOver {
		t.Fatalf("takeover after the lease: %+v, %v", next, err)
	}
	if rec := next.claim.snapshot(); rec.ChatID != "chat1" || rec.Step != stepCreated || rec.CreateUnanswered {
		t.Fatalf("taken-over record %+v: want the recorded chatid and no suspicion of a duplicate", rec)
	}
	// The stalled holder wakes up: every write it tries is refused.
	if err := holder.update(ctx, func(r *record) { r.InviteURL = "stale" }); !errors.Is(err, errClaimLost) {
		t.Fatalf("stale holder's write: %v, want errClaimLost", err)
	}
	if err := next.claim.update(ctx, func(r *record) { r.Step = stepDone }); err != nil {
		t.Fatal(err)
	}
	done, err := acquire(ctx, kv, "k", record{Holder: "y"}, lease, clk.Now)
	if err != nil || done.done == nil || done.done.InviteURL == "stale" {
		t.Fatalf("after done: %+v, %v", done, err)
	}
}

func TestTakeoverSuspectsAnUnansweredCreate(t *testing.T) {
	kv := testBucket(t)
	ctx := context.Background()
	clk := &natstest.Clock{}
	tests := []struct {
		name   string
		before func(c *claim) error // what the first holder did before it vanished
		want   bool
	}{
		{"vanished with a create on the wire", func(c *claim) error {
			return c.update(ctx, func(r *record) { r.CreateInFlight = true })
		}, true},
		{"vanished before sending", func(*claim) error { return nil }, false},
		{"vanished after a refusal", func(c *claim) error {
			if err := c.update(ctx, func(r *record) { r.CreateInFlight = true }); err != nil {
				return err
			}
			return c.update(ctx, func(r *record) { r.CreateInFlight = false })
		}, false},
		{"an old record (schema 0) not released", func(c *claim) error {
			return c.update(ctx, func(r *record) { r.Schema = 0 })
		}, true},
		{"an old record (schema 0) released cleanly", func(c *claim) error {
			if err := c.update(ctx, func(r *record) { r.Schema = 0 }); err != nil {
				return err
			}
			return c.release(ctx, false)
		}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("k%d", i)
			first, err := acquire(ctx, kv, key, record{Holder: "a"}, time.Second, clk.Now)
			if err != nil || first.claim == nil {
				t.Fatal(err)
			}
			if err := tt.before(first.claim); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Second)
			next, err := acquire(ctx, kv, key, record{Holder: "b"}, time.Second, clk.Now)
			if err != nil || next.claim == nil {
				t.Fatalf("takeover: %+v, %v", next, err)
			}
			if rec := next.claim.snapshot(); rec.CreateUnanswered != tt.want || rec.CreateInFlight || (rec.UnansweredWhy != "") != tt.want {
				t.Fatalf("create unanswered = %v (in flight %v, why %q), want %v", rec.CreateUnanswered, rec.CreateInFlight, rec.UnansweredWhy, tt.want)
			}
		})
	}
}

// A step whose write failed (here: before it was sent) must still reach the
// record when the event is handed back, or the next delivery would create
// the group again without knowing it might exist.
func TestHandBackKeepsAStepWhoseWriteFailed(t *testing.T) {
	kv := testBucket(t)
	ctx := context.Background()
	first, err := acquire(ctx, kv, "k", record{Holder: "a"}, time.Minute, time.Now)
	if err != nil || first.claim == nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := first.claim.update(cancelled, func(r *record) { r.Step, r.ChatID = stepCreated, "chat9" }); err == nil {
		t.Fatal("a write with a cancelled context succeeded")
	}
	if err := first.claim.release(ctx, false); err != nil {
		t.Fatalf("release: %v", err)
	}
	next, err := acquire(ctx, kv, "k", record{Holder: "b"}, time.Minute, time.Now)
	if err != nil || next.claim == nil {
		t.Fatalf("takeover: %+v, %v", next, err)
	}
	if rec := next.claim.snapshot(); rec.ChatID != "chat9" || rec.CreateUnanswered {
		t.Fatalf("record after hand-back: %+v, want chatid chat9", rec)
	}
}
