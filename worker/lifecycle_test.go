package worker_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/messages"
	"provisioner/worker"
)

// outcome is any result, as read from the results stream.
type outcome struct {
	Subject string
	Raw     []byte
	ID      string `json:"id"`
	Source  string `json:"source_id"`
	ChatID  string `json:"chatid"`
	OCID    string `json:"open_conversation_id"`
	Invite  string `json:"invite_url"`
	// group.updated
	Added     []string         `json:"added"`
	Removed   []string         `json:"removed"`
	Owner     json.RawMessage  `json:"owner"`
	Name      json.RawMessage  `json:"name"`
	Count     int              `json:"member_count"`
	Version   int64            `json:"version"`
	Unchanged bool             `json:"unchanged"`
	Stale     bool             `json:"stale"`
	Attempts  int              `json:"attempts"`
	Action    string           `json:"action"`
	Error     messages.Failure `json:"error"`
}

// outcomes reads the results stream once it holds want results.
func (e *env) outcomes(want int) []outcome {
	e.t.Helper()
	var out []outcome
	for _, r := range e.results(want) {
		o := outcome{Subject: r.Subject, Raw: r.Raw}
		if err := json.Unmarshal(r.Raw, &o); err != nil {
			e.t.Fatalf("result %s: %v", r.Raw, err)
		}
		out = append(out, o)
	}
	return out
}

// last is the result of the event with source id id.
func (e *env) last(want int, id string) outcome {
	e.t.Helper()
	rs := e.outcomes(want)
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Source == id {
			return rs[i]
		}
	}
	e.t.Fatalf("no result for %s among %d", id, len(rs))
	return outcome{}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// The scenario, in each mode: create → update (3 added, 2 removed,
// renamed, a new owner) → an older version ignored → a member added by hand
// survives → close (archived; a scene group disbanded) → an update after
// the close fails group_closed. DingTalk's state is checked after each step,
// and so are the calls each step cost.
func TestLifecycle(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{}, m)
			cfg := testConfig()
			if m.scene {
				cfg.OnClose = worker.CloseDisband
			}
			e.start(cfg, nil)
			calls := func() int {
				st := e.sim.Stats()
				n := 0
				for api, c := range st.Calls {
					if api != m.tokenAPI {
						n += c
					}
				}
				return n
			}
			state := func() sim.Group {
				t.Helper()
				gs := e.sim.Groups()
				if len(gs) != 1 {
					t.Fatalf("DingTalk holds %d groups, want 1", len(gs))
				}
				return gs[0]
			}

			e.publish("project.created", map[string]any{"id": "c1", "project_id": "P", "name": "Apollo", "owner": "o1",
				"members": []string{"a", "b", "c"}, "version": 1})
			created := e.last(1, "c1")
			if created.Subject != "group.provisioned" || created.Invite == "" {
				t.Fatalf("creation: %s", created.Raw)
			}
			if g := state(); g.Owner != "o1" || g.Name != "Apollo" || !slices.Equal(sorted(g.Members), []string{"a", "b", "c", "o1"}) {
				t.Fatalf("after the creation: %+v", g)
			}
			if !e.sim.AddByHand(created.ChatID, "byhand") && !e.sim.AddByHand(created.OCID, "byhand") {
				t.Fatal("the group is not in DingTalk")
			}

			before := calls()
			e.publish("project.updated", map[string]any{"id": "u3", "project_id": "P", "name": "Apollo II", "owner": "o2",
				"members": []string{"o1", "a", "d", "e"}, "version": 3})
			up := e.last(2, "u3")
			wantCalls := 2 // the new owner is added first, then everything else in one call
			if m.scene {
				wantCalls = 3 // add, update, delete
			}
			if up.Subject != "group.updated" || !slices.Equal(sorted(up.Added), []string{"d", "e", "o2"}) ||
				!slices.Equal(sorted(up.Removed), []string{"b", "c"}) || up.Count != 5 || up.Version != 3 ||
				string(up.Owner) != `{"from":"o1","to":"o2"}` || string(up.Name) != `{"from":"Apollo","to":"Apollo II"}` {
				t.Fatalf("update: %s", up.Raw)
			}
			if got := calls() - before; got != wantCalls || up.Attempts != wantCalls {
				t.Errorf("the update cost %d calls (attempts %d), want %d", got, up.Attempts, wantCalls)
			}
			if g := state(); g.Owner != "o2" || g.Name != "Apollo II" || !slices.Equal(sorted(g.Members), []string{"a", "byhand", "d", "e", "o1", "o2"}) {
				t.Fatalf("after the update: %+v (the member added by hand must stay)", g)
			}

			before = calls()
			e.publish("project.updated", map[string]any{"id": "u2", "project_id": "P", "name": "Old", "members": []string{"z"}, "version": 2})
			stale := e.last(3, "u2")
			if stale.Subject != "group.updated" || !stale.Stale || stale.Version != 3 || len(stale.Added)+len(stale.Removed) != 0 {
				t.Fatalf("an older version: %s", stale.Raw)
			}
			if got := calls() - before; got != 0 {
				t.Errorf("a stale update cost %d calls, want 0", got)
			}
			if g := state(); g.Name != "Apollo II" || len(g.Members) != 6 {
				t.Fatalf("after a stale update: %+v, want it unchanged", g)
			}

			before = calls()
			e.publish("project.updated", map[string]any{"id": "u4", "project_id": "P", "members": []string{"a"}, "version": 4})
			if r := e.last(4, "u4"); !slices.Equal(sorted(r.Removed), []string{"d", "e", "o1"}) || r.Count != 2 {
				t.Fatalf("removing others: %s", r.Raw)
			}
			if g := state(); !slices.Equal(sorted(g.Members), []string{"a", "byhand", "o2"}) {
				t.Fatalf("after removing others: %+v (the member added by hand must stay)", g)
			}

			before = calls()
			e.publish("project.closed", map[string]any{"id": "x1", "project_id": "P", "version": 5})
			closed := e.last(5, "x1")
			if got := calls() - before; got != 1 {
				t.Errorf("the close cost %d calls, want 1", got)
			}
			g := state()
			switch {
			case m.scene:
				if closed.Action != messages.ActionDisbanded || !g.Disbanded {
					t.Fatalf("close: %s; group %+v", closed.Raw, g)
				}
			default:
				if closed.Action != messages.ActionArchived || g.Name != "[已结束] Apollo II" || g.Settings["chatBannedType"] != 1 {
					t.Fatalf("close: %s; group %+v", closed.Raw, g)
				}
			}

			e.publish("project.updated", map[string]any{"id": "u9", "project_id": "P", "members": []string{"q"}, "version": 9})
			if r := e.last(6, "u9"); r.Subject != "group.failed" || r.Error.Reason != messages.ReasonGroupClosed {
				t.Fatalf("an update after the close: %s", r.Raw)
			}
			before = calls()
			e.publish("project.closed", map[string]any{"id": "x2", "project_id": "P"})
			if r := e.last(7, "x2"); r.Subject != "group.closed" || r.Action != closed.Action || string(r.Name) != string(closed.Name) {
				t.Fatalf("a second close: %s, want the first's %s", r.Raw, closed.Raw)
			}
			if got := calls() - before; got != 0 {
				t.Errorf("a second close cost %d calls, want 0", got)
			}
			if n := len(e.sim.Groups()); n != 1 {
				t.Errorf("DingTalk holds %d groups, want 1", n)
			}
		})
	}
}

// Calls: an update with 40 adds, 40 removals and a rename is one call on a
// plain group; a close one; the same events again none.
func TestUpdateCallCounts(t *testing.T) {
	for _, m := range []mode{legacyMode, v1Mode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{}, m)
			e.start(testConfig(), nil)
			e.publish("project.created", map[string]any{"id": "c", "project_id": "P", "name": "Big", "owner": "o", "members": members("old", 60)})
			e.last(1, "c")
			before := e.sim.Stats().Calls[m.add]
			keep := members("old", 60)[40:] // 20 stay, 40 go, 40 come
			upd := map[string]any{"id": "u", "project_id": "P", "name": "Bigger", "members": append(keep, members("new", 40)...)}
			e.publish("project.updated", upd)
			r := e.last(2, "u")
			if len(r.Added) != 40 || len(r.Removed) != 40 || r.Count != 61 {
				t.Fatalf("update: %s", r.Raw)
			}
			if got := e.sim.Stats().Calls[m.add] - before; got != 1 || r.Attempts != 1 {
				t.Errorf("the update cost %d calls (attempts %d), want 1", got, r.Attempts)
			}
			e.publish("project.closed", map[string]any{"id": "x", "project_id": "P"})
			if r := e.last(3, "x"); r.Attempts != 1 || r.Action != messages.ActionArchived {
				t.Errorf("close: %s, want one call", r.Raw)
			}
			total := e.sim.Stats().Calls
			e.publish("project.updated", upd) // the same events again: the same results (the stream drops the copies)
			e.publish("project.closed", map[string]any{"id": "x", "project_id": "P"})
			e.waitFor("both repeats handled", func() bool { return countLines(e.logs.Lines(), "event already handled") == 2 })
			for api, n := range e.sim.Stats().Calls {
				if n != total[api] && api != m.tokenAPI {
					t.Errorf("repeated events called %s %d more times", api, n-total[api])
				}
			}
			if n := len(e.outcomes(3)); n != 3 {
				t.Errorf("%d results, want 3", n)
			}
		})
	}
}

// Whatever DingTalk answers to adding a present member or removing an
// absent one (undocumented), an update ends with the group as it asks: a
// refusal is answered by reading the group and doing only what is missing.
func TestUpdatesWhateverDingTalkAnswers(t *testing.T) {
	strict := sim.Config{RefuseExistingMembers: true, RefuseAbsentRemovals: true, RefuseOwnerAddedInSameCall: true}
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, strict, m)
			e.start(testConfig(), nil)
			e.publish("project.created", map[string]any{"id": "c", "project_id": "P", "name": "N", "owner": "o", "members": []string{"a", "b"}})
			c := e.last(1, "c")
			id := c.ChatID
			if m.scene {
				id = c.OCID
			}
			e.sim.AddByHand(id, "h")    // joins by hand, and the project then lists them
			e.sim.RemoveByHand(id, "a") // leaves by hand, and the project then drops them
			e.publish("project.updated", map[string]any{"id": "u", "project_id": "P", "owner": "n", "members": []string{"b", "h", "n"}})
			r := e.last(2, "u")
			if r.Subject != "group.updated" {
				t.Fatalf("update: %s", r.Raw)
			}
			g, _ := e.sim.Group(id)
			if g.Owner != "n" || !slices.Equal(sorted(g.Members), []string{"b", "h", "n"}) {
				t.Errorf("DingTalk shows %s owning %v, want n owning b h n", g.Owner, g.Members)
			}
		})
	}
}

// A plain group is changed only by a worker that makes plain groups: a
// scene-group worker fails the update clearly rather than calling the wrong API.
func TestUpdateByAWorkerOfAnotherKind(t *testing.T) {
	e := newModeEnv(t, sim.Config{}, v1Mode)
	plain := e.start(testConfig(), nil)
	e.publish("project.created", map[string]any{"id": "c", "project_id": "P", "name": "N", "owner": "o", "members": []string{"a"}})
	e.last(1, "c")
	plain.stop(t)
	scene, err := dingtalk.NewSceneGroups(e.client, testTemplate)
	if err != nil {
		t.Fatal(err)
	}
	e.start(testConfig(), scene)
	e.publish("project.updated", map[string]any{"id": "u", "project_id": "P", "name": "M"})
	if r := e.last(2, "u"); r.Error.Reason != messages.ReasonInternal || !strings.Contains(r.Error.Message, "plain group but this worker makes scene groups") {
		t.Fatalf("update by a scene worker: %s", r.Raw)
	}
}
