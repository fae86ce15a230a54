package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"provisioner/dingtalk/sim"
	"provisioner/messages"
)

// Two workers follow DingTalk's events (DINGTALK_EVENTS=stream); one is
// SIGKILLed while changes keep coming: the events it took and had not
// answered are pushed again to the other, and every change has exactly one
// group.changed; 50 projects, plain and scene groups.
func TestAKilledWorkerLosesNoDingTalkEvent(t *testing.T) {
	for _, scene := range []bool{false, true} {
		t.Run(map[bool]string{false: "v1", true: "scene"}[scene], func(t *testing.T) { killAFollowingWorker(t, scene) })
	}
}

func killAFollowingWorker(t *testing.T, scene bool) {
	t.Setenv("DINGTALK_EVENTS", "stream")
	// An event the killed worker had pulled from JetStream is delivered
	// again once its lease (ACK_WAIT) runs out.
	t.Setenv("ACK_WAIT", "5s")
	cfg := sim.Config{Stream: sim.StreamConfig{RedeliverAfter: 500 * time.Millisecond}}
	if scene {
		t.Setenv("DINGTALK_SCENE_TEMPLATE_ID", "tpl")
		cfg.SceneTemplates = []string{"tpl"}
	}
	p := startPipeline(t, cfg)
	const n = 50
	for i := range n {
		p.publish("project.created", fmt.Sprintf(`{"id":"k%d","project_id":"K%d","name":"K %d","owner":"o","members":["a","b"]}`, i, i, i), nil)
	}
	p.waitFor("every group provisioned", func() bool { return p.storedResults()["group.provisioned"] == n })
	if got := sum(p.scrape(), "provisioner_dingtalk_stream_connected", nil); got != 1 {
		t.Errorf("provisioner_dingtalk_stream_connected %v, want 1", got)
	}
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")
	cmd, out := startCommand(t, "run")
	p.waitFor("two Stream-mode connections", func() bool { return p.sim.StreamStats().Connections == 2 })

	groups := p.sim.Groups()
	for i, g := range groups {
		p.sim.QuitByHand(g.OpenConversationID, "a")
		p.sim.RenameByHand(g.OpenConversationID, fmt.Sprintf("renamed %d", i))
		if i == n/2 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
	p.waitFor("a group.changed for every change", func() bool { return p.storedResults()["group.changed"] >= 2*n })
	ids := map[string]int{}
	s, err := p.js.Stream(context.Background(), "PROVISIONER_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil || m.Subject != "group.changed" {
			continue
		}
		var c messages.Changed
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		ids[c.DingTalkEventID]++
	}
	if len(ids) != 2*n {
		t.Fatalf("%d distinct events with a result, want %d\nkilled worker:\n%s", len(ids), 2*n, lastLines(out.String(), 10))
	}
	for id, k := range ids {
		if k != 1 {
			t.Errorf("event %s: %d results", id, k)
		}
	}
	st := p.sim.StreamStats()
	t.Logf("%d events, %d pushes (%d pushed again after the kill or a LATER)", st.Emitted, st.Pushes, st.Pushes-st.Emitted)
	if st.Pending != 0 || !strings.Contains(out.String(), "following DingTalk's group events") {
		t.Errorf("%d events still pending; the killed worker said:\n%s", st.Pending, lastLines(out.String(), 10))
	}
}
