package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

// listen holds a Stream-mode connection for r's worker until the test ends.
func (e *env) listen(r *running) *stream.Client {
	e.t.Helper()
	return e.listenWith(r.w.StoreDingTalkEvent)
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

// A group disbanded by hand closes its project (ON_HAND_DISBAND=report):
// group.closed says closed_by dingtalk and who, and a later update fails
// group_closed, in each mode.
func TestAHandDisbandClosesTheProject(t *testing.T) {
	n := 50
	if testing.Short() {
		n = 5
	}
	for _, m := range []mode{v1Mode, sceneMode, legacyMode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, handSim(), m)
			r := e.start(handConfig(), nil)
			e.listen(r)
			for i := range n {
				e.publish("project.created", project(fmt.Sprintf("d%d", i), "a"))
			}
			for _, o := range e.outcomes(n) {
				if !e.sim.DisbandByHand(groupOf(o)) {
					t.Fatalf("%s: the disband was refused", o.Source)
				}
			}
			closed := e.changes(n, n)
			for _, c := range closed {
				if c.Subject != "group.closed" || c.ClosedBy != messages.SourceDingTalk || c.Operator == "" || c.Action != messages.ActionDisbanded {
					t.Fatalf("result %+v: want group.closed, closed_by dingtalk, an operator, action disbanded", c)
				}
			}
			if len(closed) != n {
				t.Fatalf("%d group.closed, want %d", len(closed), n)
			}
			for i := range n {
				ev := project(fmt.Sprintf("d%d", i), "a", "b")
				ev["id"], ev["version"] = fmt.Sprintf("d%d-u", i), 2
				e.publish("project.updated", ev)
			}
			failed := 0
			for _, o := range e.outcomes(3 * n) {
				if o.Subject == "group.failed" {
					if o.Error.Reason != messages.ReasonGroupClosed {
						t.Errorf("update after the disband failed %s, want group_closed", o.Error.Reason)
					}
					failed++
				}
			}
			if failed != n {
				t.Errorf("%d updates failed, want %d", failed, n)
			}
		})
	}
}

// The same eventId pushed again after it was answered, and an event
// stored whose SUCCESS never reached DingTalk (the receiving worker died
// between storing and answering): one result each.
func TestAnEventPushedTwiceHasOneResult(t *testing.T) {
	e := newEnv(t, handSim())
	r := e.start(handConfig(), nil)
	// The first delivery of each event is stored, then answered LATER, as
	// if the worker died before its SUCCESS went out: DingTalk pushes it again.
	var mu sync.Mutex
	seen := map[string]bool{}
	store := func(ctx context.Context, ev stream.Event) error {
		if err := r.w.StoreDingTalkEvent(ctx, ev); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if !seen[ev.ID] {
			seen[ev.ID] = true
			return errors.New("died before answering")
		}
		return nil
	}
	e.listenWith(store)
	e.publish("project.created", project("x", "a", "b"))
	g := groupOf(e.outcomes(1)[0])
	e.sim.QuitByHand(g, "a")
	e.sim.RenameByHand(g, "Hand")
	e.waitFor("both events answered", func() bool { s := e.sim.StreamStats(); return s.Acked == 2 && s.Pending == 0 })
	e.changes(2, 1)
	for _, id := range e.sim.Emitted() {
		e.sim.PushAgain(id)
	}
	e.waitFor("the repeats answered", func() bool { s := e.sim.StreamStats(); return s.Acked == 4 && s.Pending == 0 })
	// A repeat after the stream's duplicate window: stored again, worked, its result published again.
	for _, id := range e.sim.Emitted() {
		e.storeAgain(id)
	}
	e.waitFor("the late repeats worked", func() bool { return countLines(e.logs.Lines(), `"outcome":"repeated"`) == 2 })
	if got := len(e.changes(2, 1)); got != 2 || e.stored("PROVISIONER_RESULTS") != 3 {
		t.Errorf("%d group.changed, %d results: want 2 and 3 (one per event)", got, e.stored("PROVISIONER_RESULTS"))
	}
}

// listenWith holds a Stream-mode connection whose events go to handler.
func (e *env) listenWith(handler stream.Handler) *stream.Client {
	e.t.Helper()
	c, err := stream.New(stream.Config{BaseURL: e.simURL, ClientID: "key", ClientSecret: "secret", Handler: handler,
		Log: zerolog.New(e.logs), InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	e.waitFor("a Stream-mode connection", c.Connected)
	return c
}

// Two workers, each with its connection; DingTalk moves the connections
// twice while hand changes come: each change has one result, none lost,
// for 50 projects in v1 and scene modes.
func TestTwoWorkersAcrossDisconnectsFollowEachChangeOnce(t *testing.T) {
	n := 50
	if testing.Short() {
		n = 10
	}
	for _, m := range []mode{v1Mode, sceneMode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, handSim(), m)
			r1 := e.start(handConfig(), nil)
			r2 := e.start(handConfig(), nil)
			e.listen(r1)
			e.listen(r2)
			for i := range n {
				e.publish("project.created", project(fmt.Sprintf("t%d", i), "a", "b"))
			}
			groups := []string{}
			for _, o := range e.outcomes(n) {
				groups = append(groups, groupOf(o))
			}
			for i, g := range groups {
				e.sim.QuitByHand(g, "a")
				if i == n/3 || i == 2*n/3 {
					e.sim.Disconnect()
				}
				e.sim.RenameByHand(g, fmt.Sprintf("Hand %d", i))
			}
			ch := e.changes(2*n, n)
			per := map[string]int{}
			for _, c := range ch {
				per[c.DingTalkEventID]++
			}
			if len(ch) != 2*n || len(per) != 2*n {
				t.Fatalf("%d group.changed for %d events, want %d for %d", len(ch), len(per), 2*n, 2*n)
			}
			for i, g := range groups {
				if grp, _ := e.sim.Group(g); slices.Contains(grp.Members, "a") || grp.Name != fmt.Sprintf("Hand %d", i) {
					t.Fatalf("group %d: %+v", i, grp)
				}
			}
			if s := e.sim.StreamStats(); s.Peak > 4 || s.Pending != 0 {
				t.Errorf("%d connections open at once (want at most 4: two workers, each moving), %d events pending", s.Peak, s.Pending)
			}
		})
	}
}

// storeAgain stores DingTalk event id once more under another message id,
// as a repeat that comes after the stream's duplicate window would be.
func (e *env) storeAgain(id string) {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, "PROVISIONER_DINGTALK_EVENTS")
	if err != nil {
		e.t.Fatal(err)
	}
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatalf("event %s not stored: %v", id, err)
		}
		if m.Header.Get(messages.HeaderDingTalkEventID) != id {
			continue
		}
		msg := nats.NewMsg(m.Subject)
		msg.Data, msg.Header = m.Data, m.Header
		msg.Header.Del("Nats-Msg-Id")
		if _, err := e.js.PublishMsg(ctx, msg); err != nil {
			e.t.Fatal(err)
		}
		return
	}
}

// ON_HAND_DISBAND=recreate: a group disbanded by hand is reported closed,
// and its open project gets a new group with its current members at once,
// whose group.provisioned names the old one in replaces; updates then
// change the new group.
func TestAHandDisbandIsAnsweredWithANewGroup(t *testing.T) {
	n := 50
	if testing.Short() {
		n = 5
	}
	for _, m := range []mode{v1Mode, sceneMode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, handSim(), m)
			cfg := handConfig()
			cfg.OnHandDisband = worker.HandDisbandRecreate
			r := e.start(cfg, nil)
			e.listen(r)
			for i := range n {
				e.publish("project.created", project(fmt.Sprintf("c%d", i), "a", "b"))
			}
			old := map[string]string{}
			for _, o := range e.outcomes(n) {
				old[o.Source] = groupOf(o)
				if !e.sim.DisbandByHand(groupOf(o)) {
					t.Fatalf("%s: the disband was refused", o.Source)
				}
			}
			fresh := map[string]string{}
			closed := 0
			for _, o := range e.outcomes(3 * n) {
				switch {
				case o.Subject == "group.closed":
					closed++
				case o.Subject == "group.provisioned" && o.Source != "" && old[o.Source] == "":
					var p messages.Provisioned
					if err := json.Unmarshal(o.Raw, &p); err != nil {
						t.Fatal(err)
					}
					id := p.ProjectID[len("P-"):]
					if p.Replaces != old[id] || groupOf(o) == old[id] {
						t.Fatalf("new group of %s: %s replacing %q, want a new group replacing %s\n%s", id, groupOf(o), p.Replaces, old[id], o.Raw)
					}
					fresh[id] = groupOf(o)
				}
			}
			if closed != n || len(fresh) != n {
				t.Fatalf("%d group.closed and %d new groups, want %d of each", closed, len(fresh), n)
			}
			for id, g := range fresh {
				grp, ok := e.sim.Group(g)
				if !ok || grp.Disbanded || !slices.Contains(grp.Members, "a") || grp.Owner != "owner-"+id {
					t.Fatalf("new group of %s: %+v, want a live group owned by owner-%s with a and b", id, grp, id)
				}
				ev := project(id, "a", "b", "z")
				ev["id"], ev["version"] = id+"-u", 2
				e.publish("project.updated", ev)
			}
			e.outcomes(4 * n)
			for id, g := range fresh {
				if grp, _ := e.sim.Group(g); !slices.Contains(grp.Members, "z") {
					t.Fatalf("the update of %s did not reach its new group: %v", id, grp.Members)
				}
			}
		})
	}
}
