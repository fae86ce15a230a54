package messages

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var kinds = map[string]Kind{"project.created": ProjectCreated, "event.scheduled": EventScheduled}

func TestDecodeProjectCreated(t *testing.T) {
	body := `{"id":"evt-1","project_id":"P-1","name":"  Apollo launch  ","owner":"manager4220",
		"members":["u1","u2","u1","manager4220"],"group":{"searchable":1,"icon":"@x"},"metadata":{"trace":"abc"},"extra":"ignored"}`
	ev, err := Decode("project.created", kinds, []byte(body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if ev.ID != "evt-1" || ev.RefID != "P-1" || ev.Name != "Apollo launch" || ev.Owner != "manager4220" || ev.RefField() != "project_id" {
		t.Errorf("event = %+v", ev)
	}
	if !slices.Equal(ev.Members, []string{"manager4220", "u1", "u2"}) {
		t.Errorf("members = %v, want owner first, deduplicated in order", ev.Members)
	}
	if ev.Group.Searchable == nil || *ev.Group.Searchable != 1 || ev.Group.Icon != "@x" || ev.Group.ValidationType != nil {
		t.Errorf("group settings = %+v", ev.Group)
	}
	if string(ev.Metadata) != `{"trace":"abc"}` {
		t.Errorf("metadata = %s", ev.Metadata)
	}
}

func TestDecodeEventScheduledInCloudEvents(t *testing.T) {
	inner := `{"id":"evt-9","event_id":"E-9","title":"Q4 offsite","organizer":"u1","attendees":["u2","u3"],"starts_at":"2026-12-01T09:00:00Z"}`
	for name, body := range map[string]string{
		"data":        `{"specversion":"1.0","id":"ce-1","source":"/hr","type":"event.scheduled","datacontenttype":"application/json","data":` + inner + `}`,
		"data_base64": `{"specversion":"1.0","id":"ce-1","source":"/hr","type":"event.scheduled","data_base64":"` + base64.StdEncoding.EncodeToString([]byte(inner)) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			ev, err := Decode("event.scheduled", kinds, []byte(body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.ID != "evt-9" || ev.RefID != "E-9" || ev.Name != "Q4 offsite" || ev.Owner != "u1" || ev.RefField() != "event_id" {
				t.Errorf("event = %+v", ev)
			}
			if !ev.StartsAt.Equal(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)) || !slices.Equal(ev.Members, []string{"u1", "u2", "u3"}) {
				t.Errorf("starts_at %v members %v", ev.StartsAt, ev.Members)
			}
		})
	}
	// Without an id of its own, the event takes the envelope's.
	ev, err := Decode("event.scheduled", kinds, []byte(`{"specversion":"1.0","id":"ce-7","data":{"event_id":"E","title":"t","organizer":"u1","attendees":["u2"],"starts_at":"2026-12-01T09:00:00+08:00"}}`))
	if err != nil || ev.ID != "ce-7" {
		t.Fatalf("envelope id fallback: %v, %v", ev, err)
	}
}

func TestGroupName(t *testing.T) {
	tests := []struct {
		in   string
		most int
		want string
	}{
		{"Apollo launch", 20, "Apollo launch"},
		{"一二三四五六七八九十一二三四五六七八九十一二", 20, "一二三四五六七八九十一二三四五六七八九十"},
		{"🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀", 20, strings.Repeat("🚀", 20)},
		{"The quarterly all-hands for everyone", 20, "The quarterly all-ha"},
		{"nineteen characters  and more", 20, "nineteen characters"},
		{"The quarterly all-hands for everyone", 30, "The quarterly all-hands for ev"},
		{strings.Repeat("群🚀", 16), 30, strings.Repeat("群🚀", 15)},
	}
	for _, tt := range tests {
		if got := GroupName(tt.in, tt.most); got != tt.want {
			t.Errorf("GroupName(%q, %d) = %q, want %q", tt.in, tt.most, got, tt.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	members := func(n int) string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf(`"m%d"`, i)
		}
		return "[" + strings.Join(ids, ",") + "]"
	}
	tests := []struct {
		name    string
		subject string
		body    string
		reason  string
		inText  []string
	}{
		{"not JSON", "project.created", `hello`, ReasonInvalidJSON, []string{"not a JSON object"}},
		{"truncated", "project.created", `{"id":"a","name":`, ReasonInvalidJSON, []string{"malformed JSON"}},
		{"array", "project.created", `[1,2]`, ReasonInvalidJSON, []string{"not a JSON object"}},
		{"empty", "project.created", ``, ReasonInvalidJSON, nil},
		{"not UTF-8", "project.created", "{\"id\":\"\xff\"}", ReasonInvalidJSON, []string{"UTF-8"}},
		{"unknown subject", "project.deleted", `{}`, ReasonUnknownSubject, []string{`"project.deleted"`}},
		{"too large", "project.created", `{"id":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, ReasonPayloadTooLarge, []string{"bytes"}},
		{"everything missing", "project.created", `{}`, ReasonInvalidEvent, []string{"id is missing", "project_id is missing", "name is missing", "owner is missing", "members is missing"}},
		{"mistyped", "project.created", `{"id":7,"project_id":"P","name":"n","owner":["o"],"members":"u1"}`, ReasonInvalidEvent,
			[]string{"id must be a string, got a number", "owner must be a string, got an array", "members must be an array of userids, got a string"}},
		{"empty members", "project.created", `{"id":"a","project_id":"P","name":"n","owner":"o","members":[]}`, ReasonInvalidEvent, []string{"members must not be empty"}},
		{"bad member", "project.created", `{"id":"a","project_id":"P","name":"n","owner":"o","members":["u1",3,""," "]}`, ReasonInvalidEvent,
			[]string{"members[1] must be a string", `members[2] must be a non-empty userid`, `members[3]`}},
		{"blank name", "project.created", `{"id":"a","project_id":"P","name":"   ","owner":"o","members":["u"]}`, ReasonInvalidEvent, []string{"name must not be empty"}},
		{"bad group", "project.created", `{"id":"a","project_id":"P","name":"n","owner":"o","members":["u"],"group":{"searchable":2,"colour":1}}`, ReasonInvalidEvent,
			[]string{"group.searchable must be 0 or 1", "group.colour is not a chat/create setting"}},
		{"bad metadata", "project.created", `{"id":"a","project_id":"P","name":"n","owner":"o","members":["u"],"metadata":[1]}`, ReasonInvalidEvent, []string{"metadata must be a JSON object"}},
		{"bad time", "event.scheduled", `{"id":"a","event_id":"E","title":"t","organizer":"o","attendees":["u"],"starts_at":"tomorrow"}`, ReasonInvalidEvent, []string{"starts_at must be an RFC 3339 time"}},
		{"event fields", "event.scheduled", `{"id":"a","project_id":"P","name":"n","owner":"o","members":["u"]}`, ReasonInvalidEvent,
			[]string{"event_id is missing", "title is missing", "organizer is missing", "attendees is missing", "starts_at is missing"}},
		{"1001 members", "project.created", `{"id":"a","project_id":"P","name":"n","owner":"boss","members":` + members(1000) + `}`, ReasonTooManyMembers, []string{"1001 members"}},
		{"CloudEvents without data", "project.created", `{"specversion":"1.0","id":"x"}`, ReasonInvalidEvent, []string{"no data"}},
		{"CloudEvents XML", "project.created", `{"specversion":"1.0","id":"x","datacontenttype":"application/xml","data":"<a/>"}`, ReasonInvalidEvent, []string{"datacontenttype"}},
		{"CloudEvents bad data", "project.created", `{"specversion":"1.0","id":"x","data":{"id":"a"}}`, ReasonInvalidEvent, []string{"data.project_id is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.subject, kinds, []byte(tt.body))
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v, want *InvalidError", err)
			}
			if inv.Reason != tt.reason {
				t.Errorf("reason %q, want %q (%v)", inv.Reason, tt.reason, err)
			}
			if !strings.HasPrefix(err.Error(), "messages: "+tt.subject) {
				t.Errorf("error %q does not start with the package and subject", err)
			}
			for _, want := range tt.inText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if len(inv.Fields) != len(inv.Problems) {
				t.Fatalf("%d fields for %d problems: %q", len(inv.Fields), len(inv.Problems), inv.Fields)
			}
			for i, f := range inv.Fields {
				if f != "" && !strings.HasPrefix(inv.Problems[i], f+" ") && inv.Reason != ReasonTooManyMembers {
					t.Errorf("problem %q is said to be about field %q", inv.Problems[i], f)
				}
			}
		})
	}
}

func TestKey(t *testing.T) {
	a, b := Key("project.created", "1"), Key("event.scheduled", "1")
	if a == b || a != Key("project.created", "1") || len(a) != 32 {
		t.Fatalf("keys %q %q: want stable, distinct per subject, 32 hex characters", a, b)
	}
}

// FuzzDecode checks that no body panics the decoder, and that whatever it
// accepts satisfies DingTalk's rules. The seeds run in every `go test`.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"e1","project_id":"P-1","name":"Apollo launch","owner":"manager4220","members":["u1","u2"]}`,
		`{"id":"e2","event_id":"E-9","title":"Q4 offsite","organizer":"u1","attendees":["u2","u3"],"starts_at":"2026-12-01T09:00:00Z"}`,
		`{"specversion":"1.0","id":"c","data":{"id":"e3","project_id":"P","name":"一二三四五六七八九十一二三四五六七八九十一","owner":"o","members":["o"]}}`,
		`{"specversion":"1.0","id":"c","data_base64":"e30="}`,
		`{"id":"e","project_id":"P","name":"n","owner":"o","members":["u"],"group":{"searchable":1},"metadata":{"a":[1]}}`,
		`{"id":null,"members":[null]}`, `[]`, `{`, ``, `{"members":{}}`,
	} {
		f.Add("project.created", []byte(s))
		f.Add("event.scheduled", []byte(s))
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		ev, err := Decode(subject, kinds, body)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Reason == "" || len(inv.Problems) == 0 {
				t.Fatalf("error %v is not a complete *InvalidError", err)
			}
			return
		}
		if ev.ID == "" || ev.Owner == "" || len(ev.Members) == 0 || ev.Members[0] != ev.Owner || len(ev.Members) > 1000 {
			t.Fatalf("accepted an event DingTalk would refuse: %+v", ev)
		}
		if n := len([]rune(GroupName(ev.Name, 20))); n < 1 || n > 20 {
			t.Fatalf("accepted a name that cuts to %d characters", n)
		}
	})
}
