package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/dingtalk/sim"
	"provisioner/messages"
	"provisioner/worker"
)

func TestBothSubjectsEndToEnd(t *testing.T) {
	e := newEnv(t, sim.Config{})
	e.start(testConfig(), nil)
	e.publish("project.created", map[string]any{
		"id": "evt-1", "project_id": "P-1", "name": "Apollo launch", "owner": "manager4220",
		"members": []string{"u1", "u2", "u1"}, "group": map[string]any{"searchable": 1}, "metadata": map[string]any{"trace": "t-1"},
	})
	e.publish("event.scheduled", map[string]any{
		"specversion": "1.0", "id": "ce-1", "source": "/hr", "type": "event.scheduled", "datacontenttype": "application/json",
		"data": map[string]any{"id": "evt-2", "event_id": "E-9", "title": "Q4 offsite for the whole company", "organizer": "u1",
			"attendees": []string{"u2", "u3"}, "starts_at": "2026-12-01T09:00:00Z"},
	})
	rs := e.results(2)
	bySource := map[string]result{}
	for _, r := range rs {
		if r.Subject != "group.provisioned" {
			t.Fatalf("result on %s: %s", r.Subject, r.Raw)
		}
		bySource[r.SourceID] = r
	}
	p, ev := bySource["evt-1"], bySource["evt-2"]
	if p.ProjectID != "P-1" || p.SourceSubject != "project.created" || p.Owner != "manager4220" || p.MemberCount != 3 ||
		p.Name != "Apollo launch" || string(p.Metadata) != `{"trace":"t-1"}` || p.Attempts != 2 || p.PossibleDuplicate {
		t.Errorf("project result: %s", p.Raw)
	}
	if ev.EventID != "E-9" || ev.ProjectID != "" || ev.Name != "Q4 offsite for the w" || ev.MemberCount != 3 {
		t.Errorf("event result: %s", ev.Raw)
	}
	for _, r := range rs {
		if r.ID != messages.Key(r.SourceSubject, r.SourceID) || !strings.HasPrefix(r.InviteURL, "https://qr.dingtalk.com/") ||
			r.ChatID == "" || r.OpenConversationID == "" || r.ProvisionedAt.IsZero() {
			t.Errorf("result missing fields: %s", r.Raw)
		}
		g, ok := e.sim.Group(r.ChatID)
		if !ok || g.Owner != r.Owner || len(g.Members) != r.MemberCount || g.Members[0] != r.Owner {
			t.Errorf("group %s in DingTalk: %+v", r.ChatID, g)
		}
	}
	if g, _ := e.sim.Group(p.ChatID); g.Settings["searchable"] != 1 {
		t.Errorf("group settings not passed: %v", g.Settings)
	}
	// The happy path costs exactly two calls per event, and one token.
	st := e.sim.Stats()
	if st.Calls["chat/create"] != 2 || st.Calls["topapi/chat/qrcode/get"] != 2 || st.Calls["chat/update"] != 0 || st.Calls["gettoken"] != 1 {
		t.Errorf("DingTalk calls: %v", st.Calls)
	}
	e.waitFor("every message settled", func() bool { return e.pending() == 0 })
	for _, line := range e.logs.all() {
		if strings.Contains(line, `"group provisioned"`) && !strings.Contains(line, `"event_id":"evt-`) {
			t.Errorf("log line without the event id: %s", line)
		}
		if strings.Contains(line, "secret") || strings.Contains(line, "access_token") {
			t.Errorf("log line with a secret: %s", line)
		}
	}
}

func TestLargeGroups(t *testing.T) {
	e := newEnv(t, sim.Config{})
	e.start(testConfig(), nil)
	e.publish("project.created", project("forty-one", members("m", 40)...)) // 41 with the owner
	e.publish("project.created", project("thousand-one", members("m", 1000)...))
	rs := e.results(2)
	for _, r := range rs {
		switch r.SourceID {
		case "forty-one":
			g, _ := e.sim.Group(r.ChatID)
			if r.Subject != "group.provisioned" || r.MemberCount != 41 || len(g.Members) != 41 {
				t.Errorf("41 members: %s; group has %d", r.Raw, len(g.Members))
			}
		case "thousand-one":
			if r.Subject != "group.failed" || r.Error.Reason != messages.ReasonTooManyMembers || r.Error.DingTalkErrcode != nil {
				t.Errorf("1001 members: %s", r.Raw)
			}
		}
	}
	st := e.sim.Stats()
	if st.Calls["chat/create"] != 1 || st.Calls["chat/update"] != 1 || st.Calls["topapi/chat/qrcode/get"] != 1 {
		t.Errorf("calls %v: want one create, one update (the 41st member), one link; none for 1001", st.Calls)
	}
}

func TestMaximumGroupIsBuiltInBatches(t *testing.T) {
	e := newEnv(t, sim.Config{})
	e.start(testConfig(), nil)
	e.publish("project.created", project("thousand", members("m", 999)...))
	r := e.results(1)[0]
	g, _ := e.sim.Group(r.ChatID)
	if r.Subject != "group.provisioned" || r.MemberCount != 1000 || len(g.Members) != 1000 {
		t.Fatalf("1000 members: %s; group has %d", r.Raw, len(g.Members))
	}
	if n := e.sim.Stats().Calls["chat/update"]; n != 24 {
		t.Errorf("chat/update called %d times, want 24 batches of 40 after the first 40", n)
	}
}

func TestInvalidEventsFailOnceWithTheirPayloadKept(t *testing.T) {
	e := newEnv(t, sim.Config{})
	e.start(testConfig(), nil)
	inputs := []struct {
		subject, body, reason string
		id                    string // the event id the result names; "" when none could be read
	}{
		{"project.created", `not json at all`, messages.ReasonInvalidJSON, ""},
		{"project.created", `{"id":"a1","project_id":"P"`, messages.ReasonInvalidJSON, ""},
		{"project.created", "\xff\xfe", messages.ReasonInvalidJSON, ""},
		{"project.created", `{"id":"a2","project_id":"P","name":"n","owner":"o","members":[]}`, messages.ReasonInvalidEvent, "a2"},
		{"project.created", `{"id":"a3","project_id":"P","name":"n","owner":"o","members":"u1"}`, messages.ReasonInvalidEvent, "a3"},
		{"project.created", `{"id":"a4","project_id":"P","owner":"o","members":["u1"]}`, messages.ReasonInvalidEvent, "a4"},
		{"event.scheduled", `{"id":"a5","event_id":"E","title":"t","organizer":"o","attendees":["u"],"starts_at":"soon"}`, messages.ReasonInvalidEvent, "a5"},
		{"event.scheduled", `{"specversion":"1.0","id":"a6"}`, messages.ReasonInvalidEvent, "a6"},
	}
	for _, in := range inputs {
		e.publish(in.subject, []byte(in.body))
	}
	byID := map[string]result{}
	for _, r := range e.results(len(inputs)) {
		byID[r.ID] = r
	}
	deadBySubjectAndBody := map[string]bool{}
	for _, d := range e.readStream("PROVISIONER_DEAD_LETTERS", len(inputs)) {
		deadBySubjectAndBody[d.Subject+" "+string(d.Raw)] = true
	}
	for i, in := range inputs {
		key := messages.Key(in.subject, in.id)
		if in.id == "" { // no id: the result is named after the stream sequence
			key = messages.Key(in.subject, fmt.Sprintf("stream-seq:%d", i+1))
		}
		r, ok := byID[key]
		if !ok || r.Subject != "group.failed" || r.Error == nil || r.Error.Reason != in.reason || r.Error.Message == "" ||
			r.Attempts != 0 || r.SourceID != in.id {
			t.Errorf("input %d (%q): result %s, want reason %s", i, in.body, r.Raw, in.reason)
		}
		if !deadBySubjectAndBody["provisioner.dead_letter."+in.subject+" "+in.body] {
			t.Errorf("input %d (%q): no dead letter holds the original payload", i, in.body)
		}
	}
	msg, err := e.js.Stream(context.Background(), "PROVISIONER_DEAD_LETTERS")
	if err != nil {
		t.Fatal(err)
	}
	first, err := msg.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	seq, _ := strconv.Atoi(first.Header.Get(worker.HeaderSourceSequence))
	if seq < 1 || seq > len(inputs) {
		t.Fatalf("dead letter headers: %v", first.Header)
	}
	in := inputs[seq-1]
	if first.Header.Get(worker.HeaderReason) != in.reason || first.Header.Get(worker.HeaderSourceSubject) != in.subject ||
		first.Header.Get(worker.HeaderError) == "" || string(first.Data) != in.body {
		t.Errorf("dead letter for input %d: headers %v, body %q", seq-1, first.Header, first.Data)
	}
	if n := e.sim.Stats().Calls; len(n) != 0 {
		t.Errorf("invalid events cost DingTalk calls: %v", n)
	}
	e.waitFor("every message settled", func() bool { return e.pending() == 0 })
}

func TestPermanentDingTalkErrorFailsAtOnce(t *testing.T) {
	e := newEnv(t, sim.Config{UnknownUsers: []string{"ghost"}})
	e.start(testConfig(), nil)
	e.publish("project.created", project("p1", "u1", "ghost"))
	r := e.results(1)[0]
	if r.Subject != "group.failed" || r.Error.Reason != messages.ReasonDingTalkRejected || r.Error.DingTalkErrcode == nil ||
		*r.Error.DingTalkErrcode != 33012 || !strings.Contains(r.Error.Message, "ghost") || r.Attempts != 1 || r.ProjectID != "P-p1" {
		t.Fatalf("result: %s", r.Raw)
	}
	e.waitFor("the message settled", func() bool { return e.pending() == 0 })
	if n := e.sim.Stats().Calls["chat/create"]; n != 1 {
		t.Fatalf("chat/create called %d times: a permanent error must not be retried", n)
	}
	dead := e.readStream("PROVISIONER_DEAD_LETTERS", 1)
	if !bytes.Contains(dead[0].Raw, []byte(`"ghost"`)) {
		t.Fatalf("dead letter: %s", dead[0].Raw)
	}
}

func TestEventPublishedTwice(t *testing.T) {
	e := newEnv(t, sim.Config{})
	// Subscribers see every publish; the results stream keeps one per message id.
	sub, err := e.js.Conn().SubscribeSync("group.provisioned")
	if err != nil {
		t.Fatal(err)
	}
	e.start(testConfig(), nil)
	ev := project("twice", "u1", "u2")
	e.publish("project.created", ev)
	first, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("first result: %v", err)
	}
	e.publish("project.created", ev)
	again, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("second result: %v", err)
	}
	if !bytes.Equal(first.Data, again.Data) || first.Header.Get("Nats-Msg-Id") != again.Header.Get("Nats-Msg-Id") {
		t.Fatalf("the second result differs:\n%s\n%s", first.Data, again.Data)
	}
	if stored := e.results(1); len(stored) != 1 {
		t.Fatalf("results stream holds %d results, want 1 (the republish is deduplicated)", len(stored))
	}
	st := e.sim.Stats()
	if st.GroupsCreated != 1 || st.Calls["chat/create"] != 1 || st.Calls["topapi/chat/qrcode/get"] != 1 {
		t.Fatalf("DingTalk: %d groups, calls %v; want one group and no second call", st.GroupsCreated, st.Calls)
	}
}

func TestUnknownSubjectIsRefusedAtStartup(t *testing.T) {
	e := newEnv(t, sim.Config{})
	cfg := testConfig()
	cfg.Subjects = map[string]messages.Kind{"project.*": messages.ProjectCreated}
	if _, err := worker.New(context.Background(), e.js, e.client, zerolog.Nop(), cfg); err == nil || !strings.Contains(err.Error(), "literal") {
		t.Fatalf("wildcard input subject: %v", err)
	}
}

func TestExistingStreamIsUsedAsItIs(t *testing.T) {
	e := newEnv(t, sim.Config{})
	// The HR team's stream already captures the input subjects (and more).
	_, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "HR", Subjects: []string{"project.>", "event.>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.start(testConfig(), nil)
	e.publish("project.updated", []byte(`{"not":"for us"}`)) // captured by the stream, not consumed by the worker
	e.publish("project.created", project("p1", "u1"))
	if r := e.results(1)[0]; r.Subject != "group.provisioned" || r.SourceID != "p1" || len(e.results(1)) != 1 {
		t.Fatalf("result: %s", r.Raw)
	}
	if _, err := e.js.Stream(context.Background(), "PROVISIONER_EVENTS"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the worker created its own events stream beside the existing one: %v", err)
	}
	info, err := e.js.Consumer(context.Background(), "HR", "provisioner")
	if err != nil {
		t.Fatalf("no consumer on the existing stream: %v", err)
	}
	if got := info.CachedInfo().Config.FilterSubjects; len(got) != 2 {
		t.Fatalf("consumer filters %v, want the two input subjects", got)
	}
}
