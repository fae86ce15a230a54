package worker_test

import (
	"fmt"
	"testing"
	"time"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
)

// A worker whose app secret DingTalk refuses (reset in the console, say)
// fails no event: it stops taking them, says why, and hands each back. It
// tries again with one event now and then, and resumes by itself when the
// secret works again; no event was failed or made twice.
func TestRefusedSecretHaltsTheWorkerNotTheEvents(t *testing.T) {
	for _, m := range []mode{legacyMode, v1Mode} {
		t.Run(m.name, func(t *testing.T) {
			const n = 5
			e := newModeEnv(t, sim.Config{}, m)
			e.sim.ResetSecret("rotated") // the worker still has "secret"
			cfg := testConfig()
			cfg.ProbeInterval = 200 * time.Millisecond
			r := e.start(cfg, nil)
			for i := range n {
				e.publish("project.created", project(fmt.Sprintf("h%d", i), "m1"))
			}
			e.waitFor("the worker to halt", func() bool { _, ok := r.w.Halted(); return ok })
			h, _ := r.w.Halted()
			if h.Reason != dingtalk.MisconfiguredCredentials {
				t.Errorf("halted for %q, want %q (%s)", h.Reason, dingtalk.MisconfiguredCredentials, h.Detail)
			}
			// Probes go out and are refused; still no event fails.
			e.waitFor("two probes", func() bool { return e.sim.Stats().Calls[m.tokenAPI] >= 3 })
			if got := e.stored("PROVISIONER_RESULTS"); got != 0 {
				t.Fatalf("%d results while the secret was refused, want none", got)
			}
			if got := countLines(e.logs.all(), "it takes no events until that is mended"); got != 1 {
				t.Errorf("the halt was logged %d times, want once", got)
			}
			e.sim.ResetSecret("secret") // someone put the old secret back
			checkAllProvisioned(t, e, n)
			if _, ok := r.w.Halted(); ok {
				t.Error("the worker still says it is halted after its events were provisioned")
			}
			if len(e.sim.Groups()) != n {
				t.Errorf("%d groups for %d events", len(e.sim.Groups()), n)
			}
		})
	}
}

// A worker started with the wrong secret beside one with the right one
// leaves every event to it.
func TestOnlyTheMisconfiguredWorkerStops(t *testing.T) {
	const n = 40
	e := newEnv(t, sim.Config{})
	_, bad := e.newGroupsWith("wrong")
	cfg := testConfig()
	cfg.ProbeInterval = time.Hour
	badWorker := e.start(cfg, bad)
	for i := range n {
		e.publish("project.created", project(fmt.Sprintf("o%d", i), "m1"))
	}
	e.waitFor("the misconfigured worker to halt", func() bool { _, ok := badWorker.w.Halted(); return ok })
	e.start(testConfig(), nil)
	checkAllProvisioned(t, e, n)
}
