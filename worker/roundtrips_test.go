package worker_test

import (
	"fmt"
	"testing"

	"provisioner/dingtalk/sim"
)

// What one event costs in NATS messages from the worker, on the happy path
// (v1, one member: create and link). Each is a request the worker waits for,
// except the ack and the pulls: the step record's create, three updates
// (create on the wire, created, done with the link and the result), the
// project record's create (its lock) and its final write, the result's
// publish, the ack, the pulls' share, and the quota count (one read and one
// write per 10 calls): docs/performance.md. The bound turns red when a round
// trip per event slips in.
func TestNATSMessagesPerEvent(t *testing.T) {
	const n = 200
	e := newEnv(t, sim.Config{})
	cfg := testConfig()
	cfg.Concurrency = 32
	r := e.start(cfg, nil)
	e.waitFor("the worker's first pull", func() bool { return r.js.Conn().Stats().OutMsgs > 0 })
	before := r.js.Conn().Stats().OutMsgs
	for i := range n {
		e.publish("project.created", project(fmt.Sprintf("rt%d", i), "m1"))
	}
	checkAllProvisioned(t, e, n)
	perEvent := float64(r.js.Conn().Stats().OutMsgs-before) / n
	t.Logf("%.2f NATS messages sent by the worker per event", perEvent)
	if perEvent > 9 {
		t.Errorf("%.2f NATS messages per event, want at most 9: what new round trip was added?", perEvent)
	}
}

// What following DingTalk's events costs in NATS messages from the worker:
// a creation pays one more write (the group index), and a change made by
// hand costs its storing (a publish), its pull share and ack, the step
// bucket read and write, the index read, the project record's lock, read
// and write, and the result's publish.
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
	if perCreation > 10 || perHand > 11 {
		t.Errorf("%.2f per creation (want at most 10), %.2f per change by hand (want at most 11): what new round trip was added?", perCreation, perHand)
	}
}
