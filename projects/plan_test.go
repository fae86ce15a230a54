package projects

import (
	"fmt"
	"reflect"
	"testing"

	"provisioner/dingtalk"
	"provisioner/messages"
)

var (
	plain = dingtalk.GroupLimits{NameRunes: 20, MembersPerAdd: 40, MembersPerRemove: 40, OneCallChange: true}
	scene = dingtalk.GroupLimits{NameRunes: 30, MembersPerAdd: 100, MembersPerRemove: 100, Disbandable: true}
)

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

func TestSteps(t *testing.T) {
	rename := &messages.Change{From: "a", To: "b"}
	tests := []struct {
		name    string
		d       Delta
		lim     dingtalk.GroupLimits
		managed []string
		want    []dingtalk.Change
	}{
		{"nothing", Delta{}, plain, nil, nil},
		{"plain: 40 in, 40 out and a rename in one call", Delta{Added: ids("n", 40), Removed: ids("o", 40), Name: rename}, plain, ids("o", 40),
			[]dingtalk.Change{{Add: ids("n", 40), Remove: ids("o", 40), Name: "b"}}},
		{"plain: 41 in takes a second call", Delta{Added: ids("n", 41)}, plain, nil,
			[]dingtalk.Change{{Add: ids("n", 41)[:40]}, {Add: ids("n", 41)[40:]}}},
		{"plain: a new owner already a member is one call", Delta{Removed: []string{"o"}, Owner: &messages.Change{From: "o", To: "m"}}, plain, []string{"o", "m"},
			[]dingtalk.Change{{Owner: "m", Remove: []string{"o"}}}},
		{"plain: a new owner not yet a member is added first", Delta{Added: []string{"x", "n"}, Owner: &messages.Change{From: "o", To: "n"}, Name: rename}, plain, []string{"o"},
			[]dingtalk.Change{{Add: []string{"n", "x"}}, {Owner: "n", Name: "b"}}},
		{"scene: adds, then title and owner, then removals", Delta{Added: []string{"n"}, Removed: []string{"o"}, Owner: &messages.Change{From: "o", To: "n"}, Name: rename}, scene, []string{"o"},
			[]dingtalk.Change{{Add: []string{"n"}}, {Owner: "n", Name: "b"}, {Remove: []string{"o"}}}},
		{"scene: 150 removals are two calls", Delta{Removed: ids("o", 150)}, scene, ids("o", 150),
			[]dingtalk.Change{{Remove: ids("o", 150)[:100]}, {Remove: ids("o", 150)[100:]}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Steps(tt.d, tt.lim, tt.managed)
			for i := range got { // compare nil and empty alike
				if len(got[i].Add) == 0 {
					got[i].Add = nil
				}
				if len(got[i].Remove) == 0 {
					got[i].Remove = nil
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Steps = %+v\nwant    %+v", got, tt.want)
			}
		})
	}
}

func TestDiffNeverRemovesWhomItDoesNotManage(t *testing.T) {
	r := &Record{Owner: "o", Name: "n", Managed: []string{"o", "a", "b"}}
	ev := &messages.Event{Kind: messages.ProjectUpdated, Has: messages.Fields{Members: true}, Listed: []string{"a", "c"}}
	d := Diff(r, Wanted(r, ev, 20))
	if !reflect.DeepEqual(d.Added, []string{"c"}) || !reflect.DeepEqual(d.Removed, []string{"b"}) || d.Owner != nil || d.Name != nil {
		t.Errorf("Diff = %+v, want c added and b removed, the owner kept", d)
	}
	ev = &messages.Event{Kind: messages.ProjectUpdated, Has: messages.Fields{Owner: true}, Owner: "a"}
	d = Diff(r, Wanted(r, ev, 20))
	if len(d.Added) != 0 || !reflect.DeepEqual(d.Removed, []string{"o", "b"}) || d.Owner == nil || d.Owner.To != "a" {
		t.Errorf("a new owner: %+v, want the old owner (no longer listed) and b removed", d)
	}
}

func TestStale(t *testing.T) {
	tests := []struct {
		name    string
		rec     Record
		v       int64
		seq     uint64
		isStale bool
	}{
		{"a higher version", Record{Version: 3, Seq: 10}, 4, 5, false},
		{"the same version", Record{Version: 3}, 3, 20, true},
		{"a lower version", Record{Version: 3}, 2, 20, true},
		{"no version after a versioned one", Record{Version: 3}, 0, 20, true},
		{"no versions: arrived later", Record{Seq: 10}, 0, 11, false},
		{"no versions: arrived earlier", Record{Seq: 10}, 0, 9, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rec.Stale(tt.v, tt.seq); got != tt.isStale {
				t.Errorf("Stale(%d, %d) = %v", tt.v, tt.seq, got)
			}
		})
	}
}

func TestReconcile(t *testing.T) {
	r := &Record{Owner: "o", Name: "old", Managed: []string{"o", "a", "gone"}, Adding: []string{"x"}, Unsure: true}
	w := Want{Owner: "o", Members: []string{"o", "a", "y"}}
	r.Reconcile(&dingtalk.GroupState{Name: "new", Owner: "o", Members: []string{"o", "a", "x", "y", "byhand"}}, w)
	if !reflect.DeepEqual(r.Managed, []string{"o", "a", "x", "y"}) || r.Name != "new" || r.Unsure {
		t.Errorf("Reconcile: %+v; want managed o a x y (not byhand, not gone)", r)
	}
}
