package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"provisioner/dingtalk/sim"
	"provisioner/dingtalk/stream"
	"provisioner/messages"
	"provisioner/worker"
)

// handSim is a simulator that speaks Stream mode quickly enough for tests.
func handSim() sim.Config {
	return sim.Config{Stream: sim.StreamConfig{RedeliverAfter: 500 * time.Millisecond, DisconnectGrace: 300 * time.Millisecond}}
}

// handConfig is testConfig with DingTalk's events followed.
func handConfig() worker.Config {
	cfg := testConfig()
	cfg.HandEvents = true
	return cfg
}

// listen holds a Stream-mode connection for r's worker until the test
// ends (or stop is called).
func (e *env) listen(r *running) (stop func()) {
	e.t.Helper()
	c, err := stream.New(stream.Config{BaseURL: e.simURL, ClientID: "key", ClientSecret: "secret", Handler: r.w.StoreDingTalkEvent,
		Log: zerolog.New(e.logs), InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stop = func() { cancel(); <-done }
	e.t.Cleanup(stop)
	e.waitFor("a Stream-mode connection", c.Connected)
	return stop
}

// changed is a group.changed or group.closed result.
type changed struct {
	Subject string
	messages.Changed
	ClosedBy string `json:"closed_by"`
	Action   string `json:"action"`
}

// changes reads the group.changed and group.closed results once there are want of them.
func (e *env) changes(want int, also int) []changed {
	e.t.Helper()
	var out []changed
	for _, r := range e.results(want + also) {
		if r.Subject != "group.changed" && !(r.Subject == "group.closed" && json.Valid(r.Raw) && string(r.Raw) != "" && hasField(r.Raw, "closed_by")) {
			continue
		}
		c := changed{Subject: r.Subject}
		if err := json.Unmarshal(r.Raw, &c); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func hasField(raw []byte, name string) bool {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	_, ok := m[name]
	return ok
}

// groupOf is the id the simulator knows a result's group by.
func groupOf(o outcome) string {
	if o.ChatID != "" {
		return o.ChatID
	}
	return o.OCID
}

// The rules, for n projects in each mode: a member who quit is not put
// back by an update that lists them unchanged, but is by one that newly
// lists them; an owner and a name set by hand survive updates that do not
// change the project's, and give way to one that does; every change has
// one group.changed.
func TestHandChangesAreFollowed(t *testing.T) {
	n := 50
	if testing.Short() {
		n = 5
	}
	for _, m := range []mode{v1Mode, sceneMode, legacyMode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, handSim(), m)
			r := e.start(handConfig(), nil)
			e.listen(r)
			ids := make([]string, n)
			for i := range n {
				ids[i] = fmt.Sprintf("r%d", i)
				e.publish("project.created", project(ids[i], "a", "b", "c"))
			}
			groups := map[string]string{}
			for _, o := range e.outcomes(n) {
				groups[o.Source] = groupOf(o)
			}
			for _, id := range ids {
				g := groups[id]
				if !e.sim.QuitByHand(g, "a") || !e.sim.SetOwnerByHand(g, "b") || !e.sim.RenameByHand(g, "Hand "+id) || !e.sim.RemoveByHand(g, "c") {
					t.Fatalf("%s: a change by hand was refused", id)
				}
			}
			ch := e.changes(4*n, n)
			count := map[string]int{}
			for _, c := range ch {
				count[c.Change]++
				if c.Source != messages.SourceDingTalk || c.DingTalkEventID == "" || c.ProjectID == "" {
					t.Errorf("group.changed %+v: source, dingtalk_event_id or project_id missing", c.Changed)
				}
			}
			want := map[string]int{messages.ChangeMemberLeft: n, messages.ChangeOwner: n, messages.ChangeName: n, messages.ChangeMembersRemoved: n}
			if !mapsEqual(count, want) {
				t.Fatalf("group.changed by change: %v, want %v", count, want)
			}
			// The project unchanged (same owner, name, members): the hand's changes stand.
			for _, id := range ids {
				ev := project(id, "a", "b", "c")
				ev["id"], ev["version"] = id+"-u1", 2
				e.publish("project.updated", ev)
			}
			e.outcomes(6 * n)
			for _, id := range ids {
				g, _ := e.sim.Group(groups[id])
				if g.Owner != "b" || g.Name != "Hand "+id || slices.Contains(g.Members, "a") || slices.Contains(g.Members, "c") {
					t.Fatalf("%s after an unchanged update: owner %s, name %q, members %v: want b, %q, without a and c", id, g.Owner, g.Name, g.Members, "Hand "+id)
				}
			}
			// Newly listed (dropped, then listed again), a new owner, a new name: applied.
			for _, id := range ids {
				ev := project(id, "b")
				ev["id"], ev["version"] = id+"-u2", 3
				e.publish("project.updated", ev)
			}
			e.outcomes(7 * n)
			for _, id := range ids {
				ev := project(id, "a", "b", "d")
				ev["id"], ev["version"], ev["owner"], ev["name"] = id+"-u3", 4, "d", "New "+id
				e.publish("project.updated", ev)
			}
			e.outcomes(8 * n)
			for _, id := range ids {
				g, _ := e.sim.Group(groups[id])
				if g.Owner != "d" || g.Name != "New "+id || !slices.Contains(g.Members, "a") || slices.Contains(g.Members, "c") {
					t.Fatalf("%s after the project changed: owner %s, name %q, members %v: want d, %q, a back, c still out", id, g.Owner, g.Name, g.Members, "New "+id)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
