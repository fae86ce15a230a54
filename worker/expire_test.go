package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/messages"
	"provisioner/worker"
)

// TestClosedProjectsAreForgottenAfterRetention: a closed project's record
// (and an adopted group's reservation, and its group's index entry) is gone RETENTION after its close,
// the bucket shrinks by it, open projects are kept, and an update of a
// forgotten project answers as for an unknown one.
func TestClosedProjectsAreForgottenAfterRetention(t *testing.T) {
	const n = 10
	e := newEnv(t, sim.Config{})
	clk := &natstest.Clock{}
	cfg := testConfig()
	cfg.Now, cfg.Retention = clk.Now, time.Hour
	cfg.CheckInterval, cfg.ExpireInterval = 20*time.Millisecond, 20*time.Millisecond
	cfg.HandEvents = true // the group index too
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
		for i := range n {
			if _, err := kv.Get(ctx, key(i)); !errors.Is(err, jetstream.ErrKeyNotFound) {
				return false
			}
		}
		return true
	})
	for i := range 2 * n {
		_, err := kv.Get(ctx, key(i))
		if gone := errors.Is(err, jetstream.ErrKeyNotFound); gone != (i < n) {
			t.Errorf("project P-%d: forgotten %v, want %v (%v)", i, gone, i < n, err)
		}
	}
	if indexed := groupKeys(t, kv); indexed != n {
		t.Errorf("%d group index entries left, want %d (the open projects')", indexed, n)
	}
	if after := bucketBytes(t, e.js); after*10 > bytesBefore*6 {
		t.Errorf("bucket %d bytes before, %d after forgetting half the projects: it did not shrink by them", bytesBefore, after)
	}
	e.publish("project.updated", map[string]any{"id": "late", "project_id": "P-0", "members": []string{"m1"}})
	if r := e.results(3*n + 1)[3*n]; r.Error == nil || r.Error.Reason != messages.ReasonNoGroup {
		t.Errorf("an update of a forgotten project: %s, want no_group", r.Raw)
	}
}

// groupKeys counts the group index's entries.
func groupKeys(t testing.TB, kv jetstream.KeyValue) int {
	t.Helper()
	keys, err := kv.ListKeysFiltered(context.Background(), "group.>")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n
}

func bucketBytes(t testing.TB, js jetstream.JetStream) uint64 {
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

// BenchmarkProjectRecords measures what the project records cost: 10,000
// projects created (3 members), updated (a member swapped, renamed) and
// closed, then the bucket once RETENTION has passed (a clock moved by hand;
// RETENTION 1h). Each event is published as the one before it is answered,
// per project, so that none is stale.
//
//	go test ./worker -run '^$' -bench ProjectRecords -benchtime 1x
func BenchmarkProjectRecords(b *testing.B) {
	n := 10_000
	if s := os.Getenv("PROJECTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for range b.N {
		e := newEnv(b, sim.Config{})
		clk := &natstest.Clock{}
		cfg := worker.Config{Now: clk.Now, Retention: time.Hour, ExpireInterval: 24 * time.Hour, MaxAckPending: 4096, Concurrency: 256}
		r := e.start(cfg, nil)
		phases := []struct {
			subject string
			body    func(i int) map[string]any
		}{
			{"project.created", func(i int) map[string]any { return project(fmt.Sprint(i), "a", "b", "c") }},
			{"project.updated", func(i int) map[string]any {
				return map[string]any{"id": fmt.Sprintf("u%d", i), "project_id": fmt.Sprintf("P-%d", i), "name": fmt.Sprintf("Renamed %d", i), "members": []string{"a", "b", "d"}}
			}},
			{"project.closed", func(i int) map[string]any {
				return map[string]any{"id": fmt.Sprintf("c%d", i), "project_id": fmt.Sprintf("P-%d", i)}
			}},
		}
		var created uint64
		for p, ph := range phases {
			for i := range n {
				data, _ := json.Marshal(ph.body(i))
				if _, err := e.js.PublishAsync(ph.subject, data); err != nil {
					b.Fatal(err)
				}
			}
			<-e.js.PublishAsyncComplete()
			e.waitFor(ph.subject+" answered", func() bool { return e.stored("PROVISIONER_RESULTS") >= (p+1)*n })
			if p == 0 {
				created = bucketBytes(b, e.js)
			}
		}
		closed := bucketBytes(b, e.js)
		clk.Advance(time.Hour + time.Minute)
		start := time.Now()
		gone, err := r.w.Expire(context.Background())
		if err != nil || gone != n {
			b.Fatalf("expired %d of %d: %v", gone, n, err)
		}
		b.ReportMetric(float64(created)/float64(n), "bytes/record-created")
		b.ReportMetric(float64(closed)/float64(n), "bytes/record-closed")
		b.ReportMetric(float64(closed)/1024, "KiB-bucket-closed")
		b.ReportMetric(float64(bucketBytes(b, e.js))/1024, "KiB-bucket-expired")
		b.ReportMetric(time.Since(start).Seconds(), "s-expiry-pass")
	}
}
