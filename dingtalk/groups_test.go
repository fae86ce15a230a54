package dingtalk

import (
	"context"
	"errors"
	"slices"
	"testing"

	"provisioner/dingtalk/sim"
)

// Groups.Change, Read and Disband for both kinds of group, against the
// simulator: what each change leaves in DingTalk, read back through Read.
func TestGroupsChangeReadDisband(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		family Family
		scene  bool
	}{{"legacy", Legacy, false}, {"v1", V1, false}, {"scene", V1, true}} {
		t.Run(tt.name, func(t *testing.T) {
			c, s := setup(t, sim.Config{SceneTemplates: []string{template}}, func(o *Options) { o.Family = tt.family })
			groups := NewChatGroups(c)
			if tt.scene {
				var err error
				if groups, err = NewSceneGroups(c, template); err != nil {
					t.Fatal(err)
				}
			}
			g, err := groups.CreateGroup(ctx, &NewGroup{Name: "Apollo", Owner: "o", Members: []string{"o", "a", "b"}, Key: "k1"})
			if err != nil {
				t.Fatal(err)
			}
			change := &Change{Add: []string{"n"}, Remove: []string{"b"}, Name: "Apollo II", Owner: "n"}
			if !tt.scene { // a plain group's new owner must be a member before the call
				if err := groups.Change(ctx, *g, &Change{Add: []string{"n"}}); err != nil {
					t.Fatal(err)
				}
				change.Add = nil
			}
			if err := groups.Change(ctx, *g, change); err != nil {
				t.Fatalf("Change: %v", err)
			}
			st, err := groups.Read(ctx, *g)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if st.Name != "Apollo II" || st.Owner != "n" || st.Dissolved || !slices.Equal(slices.Sorted(slices.Values(st.Members)), []string{"a", "n", "o"}) {
				t.Fatalf("after the change: %+v", st)
			}
			if err := groups.Change(ctx, *g, &Change{Mute: true}); err != nil {
				t.Fatalf("muting: %v", err)
			}
			if sg, _ := s.Group(g.ChatID); sg.Settings["chatBannedType"] != 1 {
				t.Errorf("muting left settings %v", sg.Settings)
			}
			err = groups.Disband(ctx, *g)
			if !groups.Limits().Disbandable {
				var de *Error
				if !errors.As(err, &de) || Classify(err) != Permanent {
					t.Errorf("disbanding a plain group: %v, want a permanent refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Disband: %v", err)
			}
			if st, err := groups.Read(ctx, *g); err != nil || !st.Dissolved {
				t.Errorf("Read after the disband: %+v, %v", st, err)
			}
			if err := groups.Change(ctx, *g, &Change{Name: "again"}); Classify(err) != Permanent {
				t.Errorf("a change after the disband: %v, want refused", err)
			}
		})
	}
}
