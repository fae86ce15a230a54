package projects

import (
	"slices"
	"testing"
	"time"

	"provisioner/dingtalk"
	"provisioner/messages"
)

func base() Record {
	return Record{Schema: Schema, RefID: "P", ChatID: "c1", Name: "N", Owner: "o", Listed: []string{"a", "b"}, Managed: []string{"o", "a", "b"}, Version: 1}
}

// Follow folds each change by hand, and says when the record already shows it.
func TestFollow(t *testing.T) {
	at := time.Unix(1000, 0)
	tests := []struct {
		name  string
		hands []Hand
		news  []bool
		check func(r *Record) bool
	}{
		{"a member leaves: not managed, departed", []Hand{{Change: messages.ChangeMemberLeft, Members: []string{"a"}, At: at}}, []bool{true},
			func(r *Record) bool {
				return !slices.Contains(r.Managed, "a") && slices.Equal(r.Departed, []string{"a"})
			}},
		{"removed twice: the second is an echo", []Hand{{Change: messages.ChangeMembersRemoved, Members: []string{"b"}, At: at}, {Change: messages.ChangeMembersRemoved, Members: []string{"b"}, At: at}},
			[]bool{true, false}, func(r *Record) bool { return slices.Equal(r.Departed, []string{"b"}) }},
		{"added by hand: known, not managed; again: echo", []Hand{{Change: messages.ChangeMembersAdded, Members: []string{"z"}, At: at}, {Change: messages.ChangeMembersAdded, Members: []string{"z"}, At: at}},
			[]bool{true, false}, func(r *Record) bool { return slices.Equal(r.Others, []string{"z"}) && !slices.Contains(r.Managed, "z") }},
		{"an add of a managed member is an echo", []Hand{{Change: messages.ChangeMembersAdded, Members: []string{"a"}, At: at}}, []bool{false},
			func(r *Record) bool { return len(r.Others) == 0 }},
		{"owner by hand: the project's kept", []Hand{{Change: messages.ChangeOwner, Owner: "a", At: at}}, []bool{true},
			func(r *Record) bool { return r.Owner == "a" && r.ProjectOwner == "o" }},
		{"an older owner change is ignored", []Hand{{Change: messages.ChangeOwner, Owner: "a", At: at}, {Change: messages.ChangeOwner, Owner: "b", At: at.Add(-time.Second)}},
			[]bool{true, false}, func(r *Record) bool { return r.Owner == "a" }},
		{"renamed by hand, then back to the project's name", []Hand{{Change: messages.ChangeName, Name: "M", At: at}, {Change: messages.ChangeName, Name: "N", At: at.Add(time.Second)}},
			[]bool{true, true}, func(r *Record) bool { return r.Name == "N" && r.ProjectName == "" }},
		{"disbanded: closed by dingtalk; again: echo", []Hand{{Change: HandDisband, Operator: "o", At: at}, {Change: HandDisband, At: at}}, []bool{true, false},
			func(r *Record) bool {
				return r.Closed != nil && r.Closed.Source == messages.SourceDingTalk && r.Closed.Operator == "o" && r.Closed.Action == messages.ActionDisbanded
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			for i, h := range tt.hands {
				if got := r.Follow(h); got != tt.news[i] {
					t.Errorf("change %d (%s): news %v, want %v", i, h.Change, got, tt.news[i])
				}
			}
			if !tt.check(&r) {
				t.Errorf("record after: %+v", r)
			}
		})
	}
}

// Drift finds what the group shows and the record does not.
func TestDrift(t *testing.T) {
	at := time.Unix(1000, 0)
	tests := []struct {
		name string
		st   dingtalk.GroupState
		want []string // changes, in order
	}{
		{"nothing", dingtalk.GroupState{Name: "N", Owner: "o", Members: []string{"o", "a", "b"}}, nil},
		{"dissolved", dingtalk.GroupState{Dissolved: true}, []string{HandDisband}},
		{"owner, name, one gone, one new", dingtalk.GroupState{Name: "M", Owner: "a", Members: []string{"o", "a", "z"}},
			[]string{messages.ChangeOwner, messages.ChangeName, messages.ChangeMembersRemoved, messages.ChangeMembersAdded}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			var got []string
			for _, h := range Drift(&r, &tt.st, at) {
				got = append(got, h.Change)
				r.Follow(h)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("drift %v, want %v", got, tt.want)
			}
			if again := Drift(&r, &tt.st, at); len(again) != 0 && !tt.st.Dissolved {
				t.Errorf("after following it, drift again: %+v", again)
			}
		})
	}
}
