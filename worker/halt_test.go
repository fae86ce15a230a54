package worker_test

import (
	"fmt"
	"testing"
	"time"

	"provisioner/internal/natstest"

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
			if got := countLines(e.logs.Lines(), "it takes no events until that is mended"); got != 1 {
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

// A permission the app lacks, or the worker's IP missing from the app's
// allowlist, halts the worker with that reason and fails nothing; granting
// the permission or adding the IP lets it resume by itself, and no group is
// made twice (an event halted at its link resumes at its link).
func TestRefusedPermissionOrIPHaltsUntilMended(t *testing.T) {
	natstest.Long(t)
	tests := []struct {
		name   string
		reason string
		refuse func(e *env)
		mend   func(e *env)
	}{
		{"create permission", dingtalk.MisconfiguredPermission,
			func(e *env) { e.sim.RevokePermission(e.mode.create) }, func(e *env) { e.sim.GrantPermission(e.mode.create) }},
		{"link permission", dingtalk.MisconfiguredPermission,
			func(e *env) { e.sim.RevokePermission(e.mode.link) }, func(e *env) { e.sim.GrantPermission(e.mode.link) }},
		{"IP allowlist", dingtalk.MisconfiguredIPAllowlist,
			func(e *env) { e.sim.DenyIP(true) }, func(e *env) { e.sim.DenyIP(false) }},
	}
	for _, m := range []mode{legacyMode, v1Mode} {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				const n = 4
				e := newModeEnv(t, sim.Config{}, m)
				tt.refuse(e)
				cfg := testConfig()
				cfg.ProbeInterval = 100 * time.Millisecond
				r := e.start(cfg, nil)
				for i := range n {
					e.publish("project.created", project(fmt.Sprintf("p%d", i), "m1"))
				}
				e.waitFor("the worker to halt", func() bool { _, ok := r.w.Halted(); return ok })
				if h, _ := r.w.Halted(); h.Reason != tt.reason {
					t.Errorf("halted for %q, want %q (%s)", h.Reason, tt.reason, h.Detail)
				}
				e.waitFor("a probe refused", func() bool { return e.sim.Stats().ConfigRefused >= 2 })
				if got := e.stored("PROVISIONER_RESULTS"); got != 0 {
					t.Fatalf("%d results while refused, want none", got)
				}
				tt.mend(e)
				checkAllProvisioned(t, e, n)
			})
		}
	}
}
