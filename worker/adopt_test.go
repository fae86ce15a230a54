package worker_test

import (
	"slices"
	"strings"
	"testing"

	"provisioner/dingtalk/sim"
	"provisioner/messages"
)

// TestAdoptAGroupMadeByHand: an update carrying the chatid of a group made
// by hand brings it under management with one read and one update; the
// members it finds that the update lists are managed from then on (a later
// update that drops one removes them), the others are left alone; and the
// same group cannot be adopted for a second project.
func TestAdoptAGroupMadeByHand(t *testing.T) {
	for _, m := range []mode{v1Mode, sceneMode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{}, m)
			hand := sim.Group{ChatID: "chathand1", OpenConversationID: "cidhand1", Name: "Made by hand", Owner: "boss",
				Members: []string{"boss", "p1", "p2", "stranger"}, Settings: map[string]int{}}
			if m.scene {
				hand.TemplateID = testTemplate
			}
			e.sim.Restore(hand)
			e.start(testConfig(), nil)
			e.publish("project.created", project("warm-up", "u1")) // the token, so that the calls below are the adoption's own
			e.results(1)
			before := e.sim.Stats().Calls

			ref := map[string]any{"chatid": "chathand1"}
			if m.scene {
				ref = map[string]any{"open_conversation_id": "cidhand1"}
			}
			adopt := map[string]any{"id": "adopt", "project_id": "P-hand", "name": "Adopted", "members": []string{"p1", "p2", "p3"}}
			for k, v := range ref {
				adopt[k] = v
			}
			e.publish("project.updated", adopt)
			r := e.results(2)[1]
			if r.Subject != "group.updated" || r.ChatID+r.OpenConversationID == "" {
				t.Fatalf("adoption result: %s", r.Raw)
			}
			calls := e.sim.Stats().Calls
			reads, updates := calls[m.read]-before[m.read], calls[m.create]-before[m.create]
			if !m.scene {
				updates = calls["v1.0/im/group/update"] - before["v1.0/im/group/update"]
			} else {
				reads += calls["v1.0/im/sceneGroups/query"] - before["v1.0/im/sceneGroups/query"]
				updates = calls["v1.0/im/sceneGroup/member/add"] - before["v1.0/im/sceneGroup/member/add"] +
					calls["v1.0/im/sceneGroup/update"] - before["v1.0/im/sceneGroup/update"]
			}
			wantReads, wantUpdates := 1, 1
			if m.scene {
				wantReads, wantUpdates = 2, 2 // query and members; add, then the title
			}
			if reads != wantReads || updates != wantUpdates {
				t.Errorf("%d reads and %d updates, want %d and %d (%v)", reads, updates, wantReads, wantUpdates, calls)
			}
			g, _ := e.sim.Group("chathand1")
			if g.Name != "Adopted" || g.Owner != "boss" || !slices.Equal(g.Members, []string{"boss", "p1", "p2", "stranger", "p3"}) {
				t.Fatalf("group after adoption: %+v", g)
			}

			e.publish("project.updated", map[string]any{"id": "drop", "project_id": "P-hand", "members": []string{"p2", "p3"}})
			if r := e.results(3)[2]; r.Subject != "group.updated" {
				t.Fatalf("update after adoption: %s", r.Raw)
			}
			if g, _ := e.sim.Group("chathand1"); !slices.Equal(g.Members, []string{"boss", "p2", "stranger", "p3"}) {
				t.Errorf("members %v: want p1 (managed since the adoption) removed and the stranger kept", g.Members)
			}

			other := map[string]any{"id": "steal", "project_id": "P-other", "name": "Mine"}
			for k, v := range ref {
				other[k] = v
			}
			e.publish("project.updated", other)
			f := e.results(4)[3]
			if f.Error == nil || f.Error.Reason != messages.ReasonInvalidEvent || !strings.Contains(f.Error.Message, `"P-hand"`) {
				t.Errorf("adopting it again for another project: %s, want invalid_event naming P-hand", f.Raw)
			}
		})
	}
}
