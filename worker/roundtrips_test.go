package worker_test

import (
	"fmt"
	"testing"

	"provisioner/dingtalk/sim"
)

// What one event costs in NATS messages from the worker, on the happy path
// (v1, no pacer), by kind: docs/performance.md lists each message and why
// it cannot go. A creation that is its project's first event: the project's
// record created as the create leaves (the event claimed, the project
// taken, the create on the wire), the group recorded, the record written
// with the link and the result, the publish and the ack. An update that
// adds a member: the project taken (one compare-and-set when this worker
// let it go last, with the member it adds), the record written with the
// result in its ledger, the publish and the ack; no step record. A stale
// update: the same without the calls. Each also pays its share
// of the pulls and of the month's call count (one read and one write per
// 10 calls). A bound turns red when a round trip per event slips in.
func TestNATSMessagesPerEvent(t *testing.T) {
	const n = 200
	e := newEnv(t, sim.Config{})
	cfg := testConfig()
	cfg.Concurrency = 32
	r := e.start(cfg, nil)
	e.waitFor("the worker's first pull", func() bool { return r.js.Conn().Stats().OutMsgs > 0 })
	kinds := []struct {
		name  string
		event func(i int) (string, map[string]any)
		bound float64
	}{
		{"creation", func(i int) (string, map[string]any) {
			return "project.created", project(fmt.Sprintf("rt%d", i), "m1")
		}, 6},
		{"update adding a member", func(i int) (string, map[string]any) {
			return "project.updated", map[string]any{"id": fmt.Sprintf("u%d", i), "project_id": fmt.Sprintf("P-rt%d", i), "version": 2, "members": []string{"m1", "m2"}}
		}, 5},
		{"stale update", func(i int) (string, map[string]any) {
			return "project.updated", map[string]any{"id": fmt.Sprintf("s%d", i), "project_id": fmt.Sprintf("P-rt%d", i), "version": 1, "members": []string{"m3"}}
		}, 5},
	}
	for k, kind := range kinds {
		before := r.js.Conn().Stats().OutMsgs
		for i := range n {
			e.publish(kind.event(i))
		}
		e.waitFor("every "+kind.name+"'s result", func() bool { return e.stored("PROVISIONER_RESULTS") == (k+1)*n })
		perEvent := float64(r.js.Conn().Stats().OutMsgs-before) / n
		t.Logf("%s: %.2f NATS messages sent by the worker per event", kind.name, perEvent)
		if perEvent > kind.bound {
			t.Errorf("%s: %.2f NATS messages per event, want at most %.0f: what new round trip was added?", kind.name, perEvent, kind.bound)
		}
	}
	for _, r := range e.results(3 * n) {
		if r.Error != nil {
			t.Fatalf("a failure on the happy path: %s", r.Raw)
		}
	}
}

// What following DingTalk's events costs in NATS messages from the worker:
// a creation pays one more write (the group index), and a change made by
// hand costs its storing (a publish), its pull share and ack, the step
// bucket read and write, the index read, the project record's lock (a
// compare-and-set; a read first when another worker wrote it last) and
// write, and the result's publish.
func TestNATSMessagesPerHandEvent(t *testing.T) {
	const n = 100
	e := newEnv(t, handSim())
	cfg := handConfig()
	cfg.Concurrency = 32
	r := e.start(cfg, nil)
	e.listen(r)
	e.waitFor("the worker's first pull", func() bool { return r.js.Conn().Stats().OutMsgs > 0 })
	before := r.js.Conn().Stats().OutMsgs
	for i := range n {
		e.publish("project.created", project(fmt.Sprintf("rh%d", i), "m1", "m2"))
	}
	created := checkAllProvisioned(t, e, n)
	perCreation := float64(r.js.Conn().Stats().OutMsgs-before) / n
	before = r.js.Conn().Stats().OutMsgs
	for _, c := range created {
		e.sim.QuitByHand(c.ChatID, "m2")
	}
	e.waitFor("every change followed", func() bool { return e.stored("PROVISIONER_RESULTS") == 2*n })
	perHand := float64(r.js.Conn().Stats().OutMsgs-before) / n
	t.Logf("%.2f NATS messages per creation, %.2f per change made by hand", perCreation, perHand)
	if perCreation > 7 || perHand > 10 {
		t.Errorf("%.2f per creation (want at most 7), %.2f per change by hand (want at most 10): what new round trip was added?", perCreation, perHand)
	}
}
