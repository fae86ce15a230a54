package messages

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var lifecycleKinds = func() map[string]Kind {
	out := map[string]Kind{}
	for _, k := range Kinds() {
		out[string(k)] = k
	}
	return out
}()

func TestDecodeUpdatesAndCloses(t *testing.T) {
	tests := []struct {
		subject, body string
		check         func(*Event) bool
	}{
		{"project.updated", `{"id":"u1","project_id":"P","name":" Apollo II ","version":7}`, func(e *Event) bool {
			return e.Kind.Op() == OpUpdate && e.Has == Fields{Name: true} && e.Name == "Apollo II" && e.Version == 7 && !e.Complete()
		}},
		{"project.updated", `{"id":"u2","project_id":"P","owner":"o","members":["a","o","a"]}`, func(e *Event) bool {
			return e.Has == Fields{Owner: true, Members: true} && slices.Equal(e.Listed, []string{"a", "o"}) && slices.Equal(e.Members, []string{"o", "a"}) && e.Version == 0
		}},
		{"project.updated", `{"id":"u3","project_id":"P","members":[]}`, func(e *Event) bool {
			return e.Has.Members && len(e.Listed) == 0 // everyone but the owner leaves
		}},
		{"event.updated", `{"id":"e1","event_id":"E","title":"T","organizer":"o","attendees":["a"],"starts_at":"2026-12-01T09:00:00Z","version":2}`, func(e *Event) bool {
			return e.Complete() && e.RefField() == "event_id" && !e.StartsAt.IsZero() && e.Kind.Events()
		}},
		{"project.closed", `{"id":"x","project_id":"P","version":9}`, func(e *Event) bool { return e.Kind.Op() == OpClose && e.Version == 9 }},
		{"event.cancelled", `{"id":"x","event_id":"E"}`, func(e *Event) bool { return e.Kind.Op() == OpClose && e.RefField() == "event_id" }},
		{"project.created", `{"id":"c","project_id":"P","name":"n","owner":"o","members":["a"],"version":1}`, func(e *Event) bool {
			return e.Kind.Op() == OpCreate && e.Complete() && e.Version == 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.subject+" "+tt.body, func(t *testing.T) {
			ev, err := Decode(tt.subject, lifecycleKinds, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(ev) {
				t.Errorf("decoded %+v", ev)
			}
		})
	}
}

func TestDecodeUpdatesRefuseBadFields(t *testing.T) {
	tests := []struct{ subject, body, field string }{
		{"project.updated", `{"id":"u","name":"n"}`, "project_id"},
		{"project.updated", `{"id":"u","project_id":"P","version":-1}`, "version"},
		{"project.updated", `{"id":"u","project_id":"P","version":1.5}`, "version"},
		{"project.updated", `{"id":"u","project_id":"P","owner":"a b"}`, "owner"},
		{"event.updated", `{"id":"u","event_id":"E","attendees":"a"}`, "attendees"},
		{"event.updated", `{"id":"u","event_id":"E","starts_at":"soon"}`, "starts_at"},
		{"event.cancelled", `{"id":"x","project_id":"P"}`, "event_id"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			_, err := Decode(tt.subject, lifecycleKinds, []byte(tt.body))
			var inv *InvalidError
			if !errors.As(err, &inv) || !slices.Contains(inv.Fields, tt.field) || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Decode: %v, want a problem with %s", err, tt.field)
			}
		})
	}
}

func TestProjectKeyIsPerFamilyAndRef(t *testing.T) {
	created := &Event{Kind: ProjectCreated, RefID: "X"}
	closed := &Event{Kind: ProjectClosed, RefID: "X"}
	event := &Event{Kind: EventScheduled, RefID: "X"}
	if ProjectKey(created) != ProjectKey(closed) || ProjectKey(created) == ProjectKey(event) {
		t.Errorf("keys: %s %s %s", ProjectKey(created), ProjectKey(closed), ProjectKey(event))
	}
}
