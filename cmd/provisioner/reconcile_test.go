package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"provisioner/dingtalk/sim"
	"provisioner/messages"
)

// reconcileRun runs provisioner reconcile with args; it returns what it
// printed and its error.
func reconcileRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errs bytes.Buffer
	err := (&Main{Stdout: &out, Stderr: &errs}).Run(context.Background(), append([]string{"reconcile"}, args...))
	if strings.Contains(out.String()+errs.String(), "very-secret-value") {
		t.Error("the app secret was printed")
	}
	return out.String(), err
}

// Silent changes (no event raised) in n groups: reconcile finds every one,
// prints it, publishes one group.changed (source reconcile) each, or
// group.closed for a dissolved group, and then finds nothing more.
func TestReconcileFindsEverySilentChange(t *testing.T) {
	p := startPipeline(t, sim.Config{})
	const n = 12
	for i := range n {
		p.publish("project.created", fmt.Sprintf(`{"id":"e%d","project_id":"R%d","name":"R %d","owner":"o","members":["a","b","c"]}`, i, i, i), nil)
	}
	groups := map[int]string{}
	p.waitFor("every group provisioned", func() bool {
		for i := range n {
			ok, _ := p.resultsFor(fmt.Sprintf("e%d", i))
			if len(ok) == 0 {
				return false
			}
			var r messages.Provisioned
			_ = json.Unmarshal(ok[0].Data, &r)
			groups[i] = r.ChatID
		}
		return true
	})
	p.sim.SilenceHands(true)
	want := map[string]int{}
	for i, g := range groups {
		switch i % 6 {
		case 0:
			p.sim.QuitByHand(g, "a")
			want[messages.ChangeMembersRemoved]++
		case 1:
			p.sim.SetOwnerByHand(g, "b")
			want[messages.ChangeOwner]++
		case 2:
			p.sim.RenameByHand(g, "renamed by hand")
			want[messages.ChangeName]++
		case 3:
			p.sim.AddByHand(g, "z")
			want[messages.ChangeMembersAdded]++
		case 4:
			p.sim.RemoveByHand(g, "c")
			p.sim.RenameByHand(g, "both")
			want[messages.ChangeMembersRemoved]++
			want[messages.ChangeName]++
		case 5:
			p.sim.DisbandByHand(g)
			want["disband"]++
		}
	}
	total := 0
	for _, v := range want {
		total += v
	}
	if s := p.sim.StreamStats(); s.Emitted != 0 {
		t.Fatalf("%d events raised by silent changes", s.Emitted)
	}

	before := p.storedResults()
	out, err := reconcileRun(t, "-dry-run")
	if err != nil {
		t.Fatalf("reconcile -dry-run: %v\n%s", err, out)
	}
	if got := strings.Count(out, "\nR"); got != total || !strings.Contains(out, fmt.Sprintf("%d changes found", total)) {
		t.Fatalf("dry run printed %d rows, want %d:\n%s", got, total, out)
	}
	if after := p.storedResults(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a dry run published results: %v, then %v", before, after)
	}

	out, err = reconcileRun(t)
	if err != nil {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	got := map[string]int{}
	p.waitFor("a result for every change", func() bool {
		got = map[string]int{}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, m := range p.results {
			var r struct {
				messages.Changed
				ClosedBy string `json:"closed_by"`
			}
			_ = json.Unmarshal(m.Data, &r)
			switch {
			case m.Subject == "group.changed" && r.Source == messages.SourceReconcile:
				got[r.Change]++
			case m.Subject == "group.closed" && r.ClosedBy == messages.SourceDingTalk:
				got["disband"]++
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
	out, err = reconcileRun(t)
	if err != nil || !strings.HasPrefix(out, "0 changes") {
		t.Fatalf("a second run: %v\n%s, want 0 changes", err, out)
	}
}

// A run that would need more calls than allowed does not start, and says
// how many it needs; -project reads one group.
func TestReconcileRefusesARunOverItsCap(t *testing.T) {
	p := startPipeline(t, sim.Config{})
	for i := range 3 {
		p.publish("project.created", fmt.Sprintf(`{"id":"c%d","project_id":"C%d","name":"C %d","owner":"o","members":["a"]}`, i, i, i), nil)
	}
	p.waitFor("three groups", func() bool { return p.storedResults()["group.provisioned"] == 3 })
	calls := p.sim.Stats().Calls["chat/get"]
	_, err := reconcileRun(t, "-max-calls", "2")
	if err == nil || !strings.Contains(err.Error(), "needs 3 DingTalk calls") {
		t.Fatalf("reconcile -max-calls 2: %v, want a refusal saying it needs 3", err)
	}
	out, err := reconcileRun(t, "-project", "C1", "-max-calls", "1")
	if err != nil || !strings.Contains(out, "in 1 groups read") {
		t.Fatalf("reconcile -project C1: %v\n%s", err, out)
	}
	if got := p.sim.Stats().Calls["chat/get"] - calls; got != 1 {
		t.Errorf("%d chat/get calls, want 1", got)
	}
	// A month's quota of 40, of which the worker counted (or reserved, in
	// blocks of 10) 20: 3 calls are more than a tenth of what is left.
	t.Setenv("DINGTALK_MONTHLY_QUOTA", "40")
	_, err = reconcileRun(t)
	if err == nil || !strings.Contains(err.Error(), "needs 3 DingTalk calls, more than 10% of the 20 left of this month's quota of 40") {
		t.Fatalf("reconcile with little quota left: %v", err)
	}
}

// With ON_HAND_DISBAND=recreate, a group found dissolved by reconcile is
// replaced as an event's disband would be: group.closed for the old one,
// then a new group whose group.provisioned names it in replaces.
func TestReconcileReplacesADissolvedGroup(t *testing.T) {
	t.Setenv("DINGTALK_EVENTS", "stream")
	t.Setenv("ON_HAND_DISBAND", "recreate")
	p := startPipeline(t, sim.Config{})
	p.publish("project.created", `{"id":"g1","project_id":"G1","name":"G 1","owner":"o","members":["a"]}`, nil)
	p.waitFor("the group", func() bool { return p.storedResults()["group.provisioned"] == 1 })
	old := p.sim.Groups()[0].ChatID
	p.sim.SilenceHands(true)
	p.sim.DisbandByHand(old)
	out, err := reconcileRun(t)
	if err != nil || !strings.Contains(out, "disband") {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	p.waitFor("a new group replacing the old", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, m := range p.results {
			var r messages.Provisioned
			if m.Subject == "group.provisioned" && json.Unmarshal(m.Data, &r) == nil && r.Replaces == old && r.ChatID != old {
				return true
			}
		}
		return false
	})
	if got := p.storedResults()["group.closed"]; got != 1 {
		t.Errorf("%d group.closed, want 1", got)
	}
}
