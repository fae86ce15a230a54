package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/messages"
)

// TestClosedProjectsAreForgottenAfterRetention: a closed project's record
// (and an adopted group's reservation) is gone RETENTION after its close,
// the bucket shrinks by it, open projects are kept, and an update of a
// forgotten project answers as for an unknown one.
func TestClosedProjectsAreForgottenAfterRetention(t *testing.T) {
	const n = 10
	e := newEnv(t, sim.Config{})
	clk := &natstest.Clock{}
	cfg := testConfig()
	cfg.Now, cfg.Retention = clk.Now, time.Hour
	cfg.CheckInterval, cfg.ExpireInterval = 20*time.Millisecond, 20*time.Millisecond
	r := e.start(cfg, nil)
	for i := range 2 * n {
		e.publish("project.created", project(fmt.Sprint(i), "m1", "m2"))
	}
	e.results(2 * n)
	for i := range n { // the first half is closed
		e.publish("project.closed", map[string]any{"id": fmt.Sprintf("close%d", i), "project_id": fmt.Sprintf("P-%d", i)})
	}
	e.results(3 * n)
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, "provisioner_projects")
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) string {
		return messages.ProjectKey(&messages.Event{Kind: messages.ProjectCreated, RefID: fmt.Sprintf("P-%d", i)})
	}
	bytesBefore := bucketBytes(t, e.js)

	clk.Advance(59 * time.Minute) // not yet
	if gone, err := r.w.Expire(ctx); err != nil || gone != 0 {
		t.Fatalf("59 minutes after the closes, with RETENTION 1h: %d forgotten (%v), want 0", gone, err)
	}
	clk.Advance(2 * time.Minute)
	e.waitFor("the closed projects forgotten", func() bool {
		_, err := kv.Get(ctx, key(n-1))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	for i := range 2 * n {
		_, err := kv.Get(ctx, key(i))
		if gone := errors.Is(err, jetstream.ErrKeyNotFound); gone != (i < n) {
			t.Errorf("project P-%d: forgotten %v, want %v (%v)", i, gone, i < n, err)
		}
	}
	if after := bucketBytes(t, e.js); after*10 > bytesBefore*6 {
		t.Errorf("bucket %d bytes before, %d after forgetting half the projects: it did not shrink by them", bytesBefore, after)
	}
	e.publish("project.updated", map[string]any{"id": "late", "project_id": "P-0", "members": []string{"m1"}})
	if r := e.results(3*n + 1)[3*n]; r.Error == nil || r.Error.Reason != messages.ReasonNoGroup {
		t.Errorf("an update of a forgotten project: %s, want no_group", r.Raw)
	}
}

func bucketBytes(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "KV_provisioner_projects")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Bytes
}
