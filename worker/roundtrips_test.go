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
