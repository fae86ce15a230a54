package worker_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"provisioner/internal/natstest"

	"provisioner/dingtalk/sim"
	"provisioner/messages"
)

// lifecycleSoak publishes, for each of projects projects, a creation and
// three updates in a shuffled order (so versions arrive out of order), then,
// once each has its result, a close; a worker is killed kills times along
// the way. It checks that every event has one result, that nothing failed,
// and that each project's group ends as its highest version says, then
// archived (renamed and muted); it returns the DingTalk calls made. The
// simulator refuses to add a present member, remove an absent one, or add
// and transfer in one call (what DingTalk does is undocumented): a resumed
// change must do only what is missing.
func lifecycleSoak(tb testing.TB, m mode, projects, kills int, faults sim.Faults) map[string]int {
	tb.Helper()
	e := newModeEnv(tb, sim.Config{Seed: 7, Faults: faults, RefuseExistingMembers: true, RefuseAbsentRemovals: true, RefuseOwnerAddedInSameCall: true}, m)
	_, groups := e.newGroups(0)
	cfg := testConfig()
	cfg.Concurrency, cfg.AckWait, cfg.RetryBudget = 64, 2*time.Second, time.Hour
	relay := e.startRelay(cfg, groups)
	type version struct {
		name, owner string
		members     []string
	}
	want := make([]version, projects)
	var events [][2]any // subject, body
	rng := rand.New(rand.NewPCG(1, 2))
	for p := range projects {
		for v := 1; v <= 4; v++ {
			ver := version{fmt.Sprintf("P%d v%d", p, v), fmt.Sprintf("owner%d-%d", p, rng.IntN(2)), members(fmt.Sprintf("m%d-", rng.IntN(3)), 3+rng.IntN(3))}
			body := map[string]any{"id": fmt.Sprintf("p%d-v%d", p, v), "project_id": fmt.Sprint("P", p), "name": ver.name, "owner": ver.owner,
				"members": ver.members, "version": v}
			subject := "project.updated"
			if v == 1 {
				subject = "project.created"
			}
			events = append(events, [2]any{subject, body})
			want[p] = ver
		}
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	publish := func(evs [][2]any) {
		for _, ev := range evs {
			e.publish(ev[0].(string), ev[1])
		}
	}
	total := 5 * projects
	killAt := func(n int) int { return (n + 1) * total / (kills + 1) }
	kill := 0
	publish(events)
	for ; kill < kills && killAt(kill) < 4*projects; kill++ {
		relay.killAt(kill+1, killAt(kill))
	}
	e.outcomes(4 * projects)
	var closes [][2]any
	for p := range projects {
		closes = append(closes, [2]any{"project.closed", map[string]any{"id": fmt.Sprintf("p%d-close", p), "project_id": fmt.Sprint("P", p), "version": 5}})
	}
	publish(closes)
	for ; kill < kills; kill++ {
		relay.killAt(kill+1, killAt(kill))
	}
	rs := e.outcomes(total)
	if len(rs) != total {
		tb.Fatalf("%d results, want %d (one per event)", len(rs), total)
	}
	chat := map[string]string{} // project → the group its results name
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.Source] {
			tb.Errorf("event %s has two results", r.Source)
		}
		seen[r.Source] = true
		if r.Subject == "group.failed" {
			tb.Errorf("event %s failed: %s", r.Source, r.Raw)
			continue
		}
		var p int
		fmt.Sscanf(r.Source, "p%d-", &p)
		id := r.ChatID
		if m.scene {
			id = r.OCID
		}
		if was, ok := chat[fmt.Sprint(p)]; ok && was != id {
			tb.Errorf("project %d: results name two groups, %s and %s", p, was, id)
		}
		chat[fmt.Sprint(p)] = id
	}
	for p, v := range want {
		g, ok := e.sim.Group(chat[fmt.Sprint(p)])
		if !ok {
			tb.Errorf("project %d: its group is not in DingTalk", p)
			continue
		}
		wantMembers := messages.GroupMembers(v.owner, v.members)
		if g.Owner != v.owner || g.Name != messages.GroupName("[已结束] "+v.name, map[bool]int{true: 30, false: 20}[m.scene]) ||
			!slices.Equal(slices.Sorted(slices.Values(g.Members)), slices.Sorted(slices.Values(wantMembers))) || g.Settings["chatBannedType"] != 1 {
			tb.Errorf("project %d: DingTalk shows %q owned by %s with %v (muted %d); want the archived v4: %q, %s, %v",
				p, g.Name, g.Owner, g.Members, g.Settings["chatBannedType"], v.name, v.owner, wantMembers)
		}
	}
	return e.sim.Stats().Calls
}

func TestLifecycleSoak(t *testing.T) {
	natstest.Long(t)
	faults := sim.Faults{BusyRate: 0.2, Latency: time.Millisecond}
	for _, m := range []mode{v1Mode, sceneMode} {
		t.Run(m.name, func(t *testing.T) {
			calls := lifecycleSoak(t, m, 150, 3, faults)
			t.Logf("%s: 150 projects, 750 events, 3 kills: calls %v", m.name, calls)
		})
	}
}

// BenchmarkLifecycleSoak is the measurement: 2,000 projects, each a
// creation and three updates shuffled, then a close; 20% busy; 10 kills.
//
//	go test ./worker -run '^$' -bench LifecycleSoak -benchtime 1x
func BenchmarkLifecycleSoak(b *testing.B) {
	for _, m := range []mode{v1Mode, sceneMode} {
		b.Run(m.name, func(b *testing.B) {
			for range b.N {
				calls := lifecycleSoak(b, m, 2000, 10, sim.Faults{BusyRate: 0.2, Latency: time.Millisecond})
				for api, n := range calls {
					b.ReportMetric(float64(n)/2000, api+"/project")
				}
			}
		})
	}
}
