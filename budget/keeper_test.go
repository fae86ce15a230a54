package budget_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/budget"
	"provisioner/internal/natstest"
)

// world is one NATS server with the stream and consumer the workers share.
func world(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Server(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"project.created"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Durable: "provisioner", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	return js
}

func open(t *testing.T, js jetstream.JetStream, quota int, log *natstest.LogBuffer, now func() time.Time) *budget.Keeper {
	t.Helper()
	k, err := budget.Open(context.Background(), js, budget.Options{Bucket: "budget", Consumer: "provisioner", Subject: "project.created",
		MonthlyQuota: quota, Log: zerolog.New(log), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Three workers spending at once never make more calls than the quota
// together; the first refused pauses the consumer until the next month.
func TestQuotaSharedByWorkers(t *testing.T) {
	const quota = 95
	js := world(t)
	ctx := context.Background()
	var log natstest.LogBuffer
	var made atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		k := open(t, js, quota, &log, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := k.Spend(ctx)
				var p *budget.PausedError
				if errors.As(err, &p) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				made.Add(1)
			}
		}()
	}
	wg.Wait()
	if made.Load() > quota {
		t.Errorf("%d calls made, quota %d", made.Load(), quota)
	}
	st, err := open(t, js, quota, &log, nil).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Calls != quota || st.Paused == nil || st.Paused.Reason != budget.ReasonQuotaReached || !st.ConsumerPaused {
		t.Errorf("status %+v, want %d calls and paused for the quota", st, quota)
	}
	if n := strings.Count(log.String(), "80% of DINGTALK_MONTHLY_QUOTA"); n < 1 || n > 3 {
		t.Errorf("the 80%% warning logged %d times, want once per worker at most:\n%s", n, log.String())
	}
}

func TestPauseAndResume(t *testing.T) {
	js := world(t)
	ctx := context.Background()
	var log natstest.LogBuffer
	clock := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	k := open(t, js, 0, &log, now)
	if err := k.Spend(ctx); err != nil {
		t.Fatalf("spend before any pause: %v", err)
	}
	until := clock.Add(time.Hour)
	if err := k.Pause(ctx, budget.Pause{Reason: budget.ReasonOperator, Since: clock, Until: until}); err != nil {
		t.Fatal(err)
	}
	other := open(t, js, 0, &log, now) // another worker sees the pause
	var p *budget.PausedError
	if err := other.Spend(ctx); !errors.As(err, &p) || p.Pause.Reason != budget.ReasonOperator || !p.Pause.Until.Equal(until) {
		t.Fatalf("spend while paused: %v, want a pause until %v", err, until)
	}
	if err := other.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := other.Status(ctx); err != nil || st.Paused != nil || st.ConsumerPaused {
		t.Fatalf("after resume: %+v, %v", st, err)
	}
	if err := other.Spend(ctx); err != nil {
		t.Fatalf("spend after resume: %v", err)
	}
	// A pause that has run out is no longer in force.
	if err := k.Pause(ctx, budget.Pause{Reason: budget.ReasonOperator, Since: clock, Until: until}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clock = until.Add(time.Second)
	mu.Unlock()
	if err := k.Spend(ctx); err != nil {
		t.Fatalf("spend after the pause ran out: %v", err)
	}
}
