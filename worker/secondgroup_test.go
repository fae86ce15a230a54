package worker_test

import (
	"testing"
	"time"

	"provisioner/dingtalk/sim"
	"provisioner/messages"
)

// TestNoSecondGroupAfterAnUnansweredCreate: a creation whose create may
// have reached DingTalk unanswered fails; a later update carrying the whole
// project then creates the group. A scene group's uuid is its project's, so
// DingTalk answers that creation with the group the first one made (or
// refuses it, and the update fails outcome_unknown): one group either way.
// A plain group's is flagged possible_duplicate, since the failed event's
// mark is kept in the project's record.
func TestNoSecondGroupAfterAnUnansweredCreate(t *testing.T) {
	tests := []struct {
		name    string
		mode    mode
		simCfg  sim.Config
		faults  sim.Faults
		first   string // the creation's failure reason
		second  string // the update's result subject or failure reason
		flagged bool
	}{
		{"scene, DingTalk answers a repeated uuid with its group", sceneMode, sim.Config{}, sim.Faults{LostReplyRate: 1},
			messages.ReasonRetriesExhausted, "group.provisioned", false},
		{"scene, DingTalk refuses a repeated uuid", sceneMode, sim.Config{RefuseRepeatedUUID: true}, sim.Faults{LostReplyRate: 1},
			messages.ReasonOutcomeUnknown, messages.ReasonOutcomeUnknown, false},
		{"plain, gateway pages until the retry budget ran out", v1Mode, sim.Config{}, sim.Faults{BadGatewayRate: 1},
			messages.ReasonRetriesExhausted, "group.provisioned", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newModeEnv(t, tt.simCfg, tt.mode)
			cfg := testConfig()
			cfg.RetryBudget = 300 * time.Millisecond
			e.start(cfg, nil)
			e.publish("project.created", project("warm-up", "u1")) // the token is fetched before the faults begin
			e.results(1)
			before := e.sim.Stats().GroupsCreated
			e.sim.SetFaults(tt.faults)
			e.publish("project.created", map[string]any{"id": "first", "project_id": "P-x", "name": "X", "owner": "o", "members": []string{"u1", "u2"}})
			if r := e.results(2)[1]; r.Error == nil || r.Error.Reason != tt.first {
				t.Fatalf("the creation: %s, want %s", r.Raw, tt.first)
			}
			e.sim.SetFaults(sim.Faults{})
			e.publish("project.updated", map[string]any{"id": "second", "project_id": "P-x", "name": "X", "owner": "o", "members": []string{"u1", "u2"}})
			r := e.results(3)[2]
			outcome := r.Subject
			if r.Error != nil {
				outcome = r.Error.Reason
			}
			if outcome != tt.second || r.PossibleDuplicate != tt.flagged {
				t.Fatalf("the update: %s, want %s with possible_duplicate %v", r.Raw, tt.second, tt.flagged)
			}
			if n := e.sim.Stats().GroupsCreated - before; n != 1 {
				t.Fatalf("%d groups made for P-x, want 1", n)
			}
		})
	}
}
