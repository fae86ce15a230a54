package worker_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"provisioner/messages"
)

// model is what the rules say a project's group is, worked out here
// independently of the worker: the group's owner, name and members, and
// what the record must keep to apply the next update.
type model struct {
	owner, name       string
	members           map[string]bool
	listed            []string
	pOwner, pName     string
	departed, managed map[string]bool
	version           int
	closed            bool
	history           []string
}

func newModel(owner, name string, listed []string) *model {
	m := &model{owner: owner, name: name, members: map[string]bool{}, listed: listed, pOwner: owner, pName: name,
		departed: map[string]bool{}, managed: map[string]bool{}}
	for _, x := range messages.GroupMembers(owner, listed) {
		m.members[x], m.managed[x] = true, true
	}
	return m
}

func (m *model) wanted(owner string, listed []string) []string {
	return messages.GroupMembers(owner, listed)
}

// leave is a member quitting by hand.
func (m *model) leave(x string) {
	delete(m.members, x)
	delete(m.managed, x)
	if slices.Contains(m.wanted(m.pOwner, m.listed), x) {
		m.departed[x] = true
	}
}

// update applies a project update of a newer version.
func (m *model) update(v int, owner, name string, listed []string) {
	before := m.wanted(m.pOwner, m.listed)
	if owner != m.pOwner {
		m.owner, m.pOwner = owner, owner
	}
	if name != m.pName {
		m.name, m.pName = name, name
	}
	want, departed := map[string]bool{}, map[string]bool{}
	for _, x := range m.wanted(m.pOwner, listed) {
		if m.departed[x] && slices.Contains(before, x) && x != m.owner {
			departed[x] = true
			continue
		}
		want[x] = true
	}
	for x := range want {
		m.members[x], m.managed[x] = true, true
	}
	for x := range m.managed {
		if !want[x] && x != m.owner && !departed[x] {
			delete(m.members, x)
			delete(m.managed, x)
		}
	}
	m.departed, m.listed, m.version = departed, listed, v
}

// A soak: projects whose groups people change by hand between updates
// (some of them older versions arriving late) and closes, every project's
// steps interleaved with the others'. At the end each group is what the
// rules say (an independent model of them), and every change by hand has
// exactly one group.changed.
func TestHandChangesInterleavedWithUpdatesSoak(t *testing.T) {
	projectsN, steps := 30, 20
	if testing.Short() {
		projectsN, steps = 6, 6
	}
	for _, md := range []mode{v1Mode, sceneMode} {
		t.Run(md.name, func(t *testing.T) { soakHands(t, md, projectsN, steps) })
	}
}

func soakHands(t *testing.T, md mode, projectsN, steps int) {
	rng := rand.New(rand.NewPCG(7, uint64(projectsN)))
	e := newModeEnv(t, handSim(), md)
	r := e.start(handConfig(), nil)
	e.listen(r)
	people := []string{"a", "b", "c", "d", "e", "f"}
	models := make([]*model, projectsN)
	groups := make([]string, projectsN)
	for i := range projectsN {
		id := fmt.Sprintf("s%d", i)
		ev := project(id, "a", "b", "c", "d")
		ev["owner"], ev["version"] = "o", 1
		e.publish("project.created", ev)
		models[i] = newModel("o", "Project "+id, []string{"a", "b", "c", "d"})
		models[i].version = 1
	}
	results := projectsN
	for _, o := range e.outcomes(results) {
		var i int
		fmt.Sscanf(o.Source, "s%d", &i)
		groups[i] = groupOf(o)
	}
	hands := 0
	for step := range steps {
		var late []map[string]any // older versions, published once the newer ones are applied
		order := rng.Perm(projectsN)
		for _, i := range order {
			m, g, id := models[i], groups[i], fmt.Sprintf("s%d", i)
			if m.closed {
				continue
			}
			switch k := rng.IntN(10); {
			case k < 2: // a member leaves
				x := people[rng.IntN(len(people))]
				if x != m.owner && m.members[x] && e.sim.QuitByHand(g, x) {
					m.history = append(m.history, fmt.Sprintf("%d: %s quits", step, x))
					m.leave(x)
					hands++
				}
			case k < 3: // the owner hands the group on
				var in []string
				for x := range m.members {
					if x != m.owner {
						in = append(in, x)
					}
				}
				if len(in) > 0 {
					x := slices.Sorted(slices.Values(in))[rng.IntN(len(in))]
					if e.sim.SetOwnerByHand(g, x) {
						m.history = append(m.history, fmt.Sprintf("%d: owner %s by hand", step, x))
						m.owner = x
						hands++
					}
				}
			case k < 4: // renamed
				n := fmt.Sprintf("hand %d-%d", i, step)
				if e.sim.RenameByHand(g, n) {
					m.history = append(m.history, fmt.Sprintf("%d: renamed %q by hand", step, n))
					m.name = n
					hands++
				}
			case k < 8: // an update, with an older one arriving after it
				listed := []string{}
				for _, x := range people {
					if rng.IntN(3) > 0 {
						listed = append(listed, x)
					}
				}
				owner, name := m.pOwner, m.pName
				if rng.IntN(4) == 0 {
					owner = []string{"o", "p", "a"}[rng.IntN(3)]
				}
				if rng.IntN(4) == 0 {
					name = fmt.Sprintf("N %d-%d", i, step)
				}
				v := m.version + 2
				ev := project(id, listed...)
				ev["id"], ev["owner"], ev["name"], ev["version"] = fmt.Sprintf("%s-v%d", id, v), owner, name, v
				e.publish("project.updated", ev)
				results++
				m.update(v, owner, name, listed)
				m.history = append(m.history, fmt.Sprintf("%d: update v%d owner %s name %q %v -> group %s %q %v", step, v, owner, name, listed, m.owner, m.name, slices.Sorted(maps.Keys(m.members))))
				if rng.IntN(2) == 0 {
					old := project(id, "z")
					old["id"], old["version"] = fmt.Sprintf("%s-v%d", id, v-1), v-1
					late = append(late, old)
				}
			case k < 9 && step > steps/2: // closed
				ev := map[string]any{"id": id + "-close", "project_id": "P-" + id, "version": m.version + 1}
				e.publish("project.closed", ev)
				results++
				m.closed = true
			}
		}
		e.waitFor(fmt.Sprintf("step %d's %d results and %d changes", step, results, hands), func() bool {
			return e.stored("PROVISIONER_RESULTS") >= results+hands
		})
		for _, old := range late {
			e.publish("project.updated", old)
			results++
		}
		e.waitFor(fmt.Sprintf("step %d's late updates", step), func() bool { return e.stored("PROVISIONER_RESULTS") >= results+hands })
	}
	got := e.changes(hands, results)
	if len(got) != hands {
		t.Fatalf("%d group.changed for %d changes made by hand", len(got), hands)
	}
	perEvent := map[string]bool{}
	for _, c := range got {
		perEvent[c.DingTalkEventID] = true
	}
	if len(perEvent) != hands {
		t.Errorf("%d distinct events among %d results", len(perEvent), hands)
	}
	for i, m := range models {
		grp, _ := e.sim.Group(groups[i])
		members := slices.Sorted(slices.Values(grp.Members))
		want := slices.Sorted(maps.Keys(m.members))
		name := m.name
		if m.closed {
			name = messages.GroupName("[已结束] "+m.name, e.groups.Limits().NameRunes)
		}
		if grp.Owner != m.owner || !slices.Equal(members, want) || grp.Name != name {
			t.Errorf("s%d: owner %s, name %q, members %v; the rules say %s, %q, %v\n%s", i, grp.Owner, grp.Name, members, m.owner, name, want, strings.Join(m.history, "\n"))
		}
	}
	t.Logf("%d projects, %d steps: %d changes by hand, %d results of events", projectsN, steps, hands, results)
}
