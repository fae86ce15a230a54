package worker_test

import (
	"fmt"
	"testing"

	"provisioner/dingtalk/sim"
)

// What one event costs in NATS messages from the worker, on the happy path
// (v1, two members: create and link). Each is a request the worker waits
// for, except the ack and the pulls: 1 step-record create, 5 step-record
// updates (create on the wire, created, linked, done… see docs/performance.md),
// 1 result publish, the ack, and the quota count (one read and one write per
// 10 calls). The bound keeps a new round trip per event from slipping in
// unnoticed.
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
	if perEvent > 8.5 {
		t.Errorf("%.2f NATS messages per event, want at most 8.5: what new round trip was added?", perEvent)
	}
}
