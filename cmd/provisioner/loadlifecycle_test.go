package main

import (
	"context"
	"strings"
	"testing"

	"provisioner/internal/natstest"

	"provisioner/dingtalk/sim"
)

// load -lifecycle against provisioner run: every project created, updated
// out of order and closed, and read back through DingTalk's API; the
// simulator refuses what DingTalk may refuse.
func TestLoadLifecycle(t *testing.T) {
	natstest.Long(t)
	t.Setenv("DINGTALK_QPS", "1000")
	p := startPipeline(t, sim.Config{Seed: 3, Faults: sim.Faults{BusyRate: 0.2},
		RefuseExistingMembers: true, RefuseAbsentRemovals: true, RefuseOwnerAddedInSameCall: true})
	var out natstest.LogBuffer
	err := (&Main{Stdout: &out, Stderr: &out}).Run(context.Background(), []string{"load", "-lifecycle", "-n", "30", "-id-prefix", "lc", "-timeout", "50s"})
	if err != nil || !strings.Contains(out.String(), "DingTalk read back: 30 of 30 groups as their version 4 says, archived") {
		t.Fatalf("load -lifecycle: %v\n%s\nworker:\n%s", err, out.String(), lastLines(p.logs.String(), 20))
	}
	if n := len(p.sim.Groups()); n != 30 {
		t.Errorf("DingTalk holds %d groups, want 30", n)
	}
}
