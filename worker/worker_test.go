package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/messages"
	"provisioner/worker"
)

func TestBothSubjectsEndToEnd(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { bothSubjectsEndToEnd(t, m) })
	}
}

func bothSubjectsEndToEnd(t *testing.T, m mode) {
	e := newModeEnv(t, sim.Config{}, m)
	e.start(testConfig(), nil)
	e.publish("project.created", map[string]any{
		"id": "evt-1", "project_id": "P-1", "name": "Apollo launch", "owner": "manager4220",
		"members": []string{"u1", "u2", "u1"}, "group": map[string]any{"searchable": 1}, "metadata": map[string]any{"trace": "t-1"},
	})
	e.publish("event.scheduled", map[string]any{
		"specversion": "1.0", "id": "ce-1", "source": "/hr", "type": "event.scheduled", "datacontenttype": "application/json",
		"data": map[string]any{"id": "evt-2", "event_id": "E-9", "title": "Q4 offsite for the whole company and friends", "organizer": "u1",
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
	wantTitle := "Q4 offsite for the w" // 20 characters
	if m.scene {
		wantTitle = "Q4 offsite for the whole compa" // 30
	}
	if ev.EventID != "E-9" || ev.ProjectID != "" || ev.Name != wantTitle || ev.MemberCount != 3 {
		t.Errorf("event result: %s; want the name cut to %q", ev.Raw, wantTitle)
	}
	for _, r := range rs {
		if r.ID != messages.Key(r.SourceSubject, r.SourceID) || !strings.HasPrefix(r.InviteURL, "https://qr.dingtalk.com/") ||
			r.ChatID == "" || r.OpenConversationID == "" || r.ProvisionedAt.IsZero() {
			t.Errorf("result missing fields: %s", r.Raw)
		}
		g, ok := e.sim.Group(r.ChatID)
		if !ok || g.Owner != r.Owner || len(g.Members) != r.MemberCount || g.Members[0] != r.Owner || g.Name != r.Name {
			t.Errorf("group %s in DingTalk: %+v", r.ChatID, g)
		}
		// A scene group's uuid is its project's: the project key, then the record's birth.
		pk := messages.ProjectKey(&messages.Event{Kind: messages.Kind(r.SourceSubject), RefID: r.ProjectID + r.EventID})
		if m.scene && (g.TemplateID != testTemplate || !strings.HasPrefix(g.UUID, pk+"-")) {
			t.Errorf("scene group %+v: want template %s and uuid %s-…", g, testTemplate, pk)
		}
	}
	if g, _ := e.sim.Group(p.ChatID); g.Settings["searchable"] != 1 {
		t.Errorf("group settings not passed: %v", g.Settings)
	}
	// The happy path costs exactly two calls per event, and one token.
	st := e.sim.Stats()
	if st.Calls[m.create] != 2 || st.Calls[m.link] != 2 || st.Calls[m.add] != 0 || st.Calls[m.tokenAPI] != 1 || len(st.Calls) != 3 {
		t.Errorf("DingTalk calls: %v; want 2 %s, 2 %s, 1 %s and nothing else", st.Calls, m.create, m.link, m.tokenAPI)
	}
	e.waitFor("every message settled", func() bool { return e.pending() == 0 })
	for _, line := range e.logs.Lines() {
		if strings.Contains(line, `"group provisioned"`) && !strings.Contains(line, `"event_id":"evt-`) {
			t.Errorf("log line without the event id: %s", line)
		}
		if strings.Contains(line, "secret") || strings.Contains(line, "access_token") {
			t.Errorf("log line with a secret: %s", line)
		}
	}
}

func TestNamesAreCutByCharacters(t *testing.T) {
	name := "新员工入职🚀" + strings.Repeat("冬季批次🎉", 8) // 45 characters, many of them 3 or 4 bytes
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{}, m)
			e.start(testConfig(), nil)
			e.publish("project.created", map[string]any{"id": "cjk", "project_id": "P", "name": name, "owner": "o", "members": []string{"u"}})
			r := e.results(1)[0]
			want := []rune(name)[:20]
			if m.scene {
				want = []rune(name)[:30]
			}
			g, _ := e.sim.Group(r.ChatID)
			if r.Subject != "group.provisioned" || r.Name != string(want) || g.Name != string(want) {
				t.Fatalf("result %s, group name %q; want %q", r.Raw, g.Name, string(want))
			}
		})
	}
}

func TestLargeGroups(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{}, m)
			e.start(testConfig(), nil)
			e.publish("project.created", project("forty-five", members("m", 44)...)) // 45 with the owner
			e.publish("project.created", project("thousand-one", members("m", 1000)...))
			rs := e.results(2)
			for _, r := range rs {
				switch r.SourceID {
				case "forty-five":
					g, _ := e.sim.Group(r.ChatID)
					if r.Subject != "group.provisioned" || r.MemberCount != 45 || len(g.Members) != 45 {
						t.Errorf("45 members: %s; group has %d", r.Raw, len(g.Members))
					}
				case "thousand-one":
					if r.Subject != "group.failed" || r.Error.Reason != messages.ReasonTooManyMembers || r.Error.DingTalkErrcode != nil {
						t.Errorf("1001 members: %s", r.Raw)
					}
				}
			}
			wantAdds := 1 // the 41st to 45th member
			if m.scene {
				wantAdds = 0 // a scene group takes 999 besides the owner at create
			}
			st := e.sim.Stats()
			if st.Calls[m.create] != 1 || st.Calls[m.add] != wantAdds || st.Calls[m.link] != 1 {
				t.Errorf("calls %v: want one create, %d adds, one link; none for 1001", st.Calls, wantAdds)
			}
		})
	}
}

func TestMaximumGroupIsBuiltInBatches(t *testing.T) {
	for _, m := range []mode{v1Mode, sceneMode} {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{}, m)
			e.start(testConfig(), nil)
			e.publish("project.created", project("thousand", members("m", 999)...))
			r := e.results(1)[0]
			g, _ := e.sim.Group(r.ChatID)
			if r.Subject != "group.provisioned" || r.MemberCount != 1000 || len(g.Members) != 1000 {
				t.Fatalf("1000 members: %s; group has %d", r.Raw, len(g.Members))
			}
			want := 24 // batches of 40 after the first 40
			if m.scene {
				want = 0
			}
			if n := e.sim.Stats().Calls[m.add]; n != want {
				t.Errorf("%s called %d times, want %d", m.add, n, want)
			}
		})
	}
}

func TestInvalidEventsFailOnceWithTheirPayloadKept(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { invalidEventsFailOnce(t, m) })
	}
}

func invalidEventsFailOnce(t *testing.T, m mode) {
	e := newModeEnv(t, sim.Config{}, m)
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
	seq, _ := strconv.Atoi(first.Header.Get(messages.HeaderSourceSequence))
	if seq < 1 || seq > len(inputs) {
		t.Fatalf("dead letter headers: %v", first.Header)
	}
	in := inputs[seq-1]
	if first.Header.Get(messages.HeaderReason) != in.reason || first.Header.Get(messages.HeaderSourceSubject) != in.subject ||
		first.Header.Get(messages.HeaderError) == "" || string(first.Data) != in.body {
		t.Errorf("dead letter for input %d: headers %v, body %q", seq-1, first.Header, first.Data)
	}
	if n := e.sim.Stats().Calls; len(n) != 0 {
		t.Errorf("invalid events cost DingTalk calls: %v", n)
	}
	e.waitFor("every message settled", func() bool { return e.pending() == 0 })
}

// A creation that failed, published again, gets the same failure: its
// first try made no group and left no project, yet no group is made now.
func TestAFailedCreationPublishedAgainFailsTheSame(t *testing.T) {
	e := newEnv(t, sim.Config{UnknownUsers: []string{"ghost"}})
	sub, err := e.js.Conn().SubscribeSync("group.failed")
	if err != nil {
		t.Fatal(err)
	}
	e.start(testConfig(), nil)
	ev := project("p1", "u1", "ghost")
	var got [][]byte
	for range 2 {
		e.publish("project.created", ev)
		m, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("result %d: %v", len(got)+1, err)
		}
		got = append(got, m.Data)
	}
	if !bytes.Equal(got[0], got[1]) {
		t.Fatalf("the second result differs:\n%s\n%s", got[0], got[1])
	}
	if st := e.sim.Stats(); st.GroupsCreated != 0 || st.Calls["v1.0/im/group/create"] != 1 {
		t.Fatalf("DingTalk: %d groups, calls %v; want no group and one create", st.GroupsCreated, st.Calls)
	}
}

func TestPermanentDingTalkErrorFailsAtOnce(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			e := newModeEnv(t, sim.Config{UnknownUsers: []string{"ghost"}}, m)
			e.start(testConfig(), nil)
			e.publish("project.created", project("p1", "u1", "ghost"))
			r := e.results(1)[0]
			if r.Subject != "group.failed" || r.Error.Reason != messages.ReasonDingTalkRejected || !strings.Contains(r.Error.Message, "ghost") ||
				r.Attempts != 1 || r.ProjectID != "P-p1" || r.Error.DingTalkRequestID == "" {
				t.Fatalf("result: %s", r.Raw)
			}
			// DingTalk's answer as it came: errcode from the old family, code from v1.0.
			if m.family == dingtalk.Legacy && (r.Error.DingTalkErrcode == nil || *r.Error.DingTalkErrcode != 33012 || r.Error.DingTalkCode != "") ||
				m.family == dingtalk.V1 && (r.Error.DingTalkErrcode != nil || r.Error.DingTalkCode != dingtalk.CodeV1MemberNotFound) {
				t.Fatalf("DingTalk's answer in the result: %s", r.Raw)
			}
			e.waitFor("the message settled", func() bool { return e.pending() == 0 })
			if n := e.sim.Stats().Calls[m.create]; n != 1 {
				t.Fatalf("%s called %d times: a permanent error must not be retried", m.create, n)
			}
			dead := e.readStream("PROVISIONER_DEAD_LETTERS", 1)
			if !bytes.Contains(dead[0].Raw, []byte(`"ghost"`)) {
				t.Fatalf("dead letter: %s", dead[0].Raw)
			}
		})
	}
}

// A producer's JetStream headers (here Nats-Expected-Stream, as batch
// sends) act on the events stream only: the event's dead letter is stored
// and its failure published, not refused by the dead-letter stream forever.
func TestProducersJetStreamHeadersStayOffTheDeadLetter(t *testing.T) {
	e := newEnv(t, sim.Config{UnknownUsers: []string{"ghost"}})
	e.start(testConfig(), nil)
	data, _ := json.Marshal(project("p1", "ghost"))
	msg := &nats.Msg{Subject: "project.created", Data: data, Header: nats.Header{"X-Team": {"hr"}}}
	if _, err := e.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID("project.created-p1"), jetstream.WithExpectStream("PROVISIONER_EVENTS")); err != nil {
		t.Fatal(err)
	}
	if r := e.results(1)[0]; r.Subject != "group.failed" {
		t.Fatalf("result: %s", r.Raw)
	}
	s, err := e.js.Stream(context.Background(), "PROVISIONER_DEAD_LETTERS")
	if err != nil {
		t.Fatal(err)
	}
	letter, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if letter.Header.Get("X-Team") != "hr" || letter.Header.Get(jetstream.ExpectedStreamHeader) != "" || letter.Header.Get(jetstream.MsgIDHeader) == "project.created-p1" {
		t.Errorf("dead letter headers %v: want the producer's own, not its JetStream ones", letter.Header)
	}
}

func TestEventPublishedTwice(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { eventPublishedTwice(t, m) })
	}
}

func eventPublishedTwice(t *testing.T, m mode) {
	e := newModeEnv(t, sim.Config{}, m)
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
	if st.GroupsCreated != 1 || st.Calls[m.create] != 1 || st.Calls[m.link] != 1 {
		t.Fatalf("DingTalk: %d groups, calls %v; want one group and no second call", st.GroupsCreated, st.Calls)
	}
}

func TestUnknownSubjectIsRefusedAtStartup(t *testing.T) {
	e := newEnv(t, sim.Config{})
	cfg := testConfig()
	cfg.Subjects = map[string]messages.Kind{"project.*": messages.ProjectCreated}
	if _, err := worker.New(context.Background(), e.js, e.groups, zerolog.Nop(), cfg); err == nil || !strings.Contains(err.Error(), "literal") {
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
	e.publish("project.archived", []byte(`{"not":"for us"}`)) // captured by the stream, not consumed by the worker
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
	if got := info.CachedInfo().Config.FilterSubjects; len(got) != 6 {
		t.Fatalf("consumer filters %v, want the six input subjects", got)
	}
}

// Results carry CloudEvents binary-mode headers, derived from the result, so
// that CloudEvents-aware consumers read them as events.
func TestResultsAreCloudEvents(t *testing.T) {
	e := newEnv(t, sim.Config{UnknownUsers: []string{"ghost"}})
	e.start(testConfig(), nil)
	e.publish("project.created", project("ok", "u1"))
	e.publish("project.created", project("bad", "ghost"))
	for _, r := range e.results(2) {
		t.Run(r.Subject, func(t *testing.T) {
			var body struct {
				ProvisionedAt time.Time `json:"provisioned_at"`
				FailedAt      time.Time `json:"failed_at"`
			}
			if err := json.Unmarshal(r.Raw, &body); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"ce-specversion": "1.0", "ce-id": r.Header.Get("Nats-Msg-Id"), "ce-source": "/provisioner",
				"ce-type": "provisioner." + r.Subject, "content-type": "application/json",
				"ce-time": body.ProvisionedAt.UTC().Format(time.RFC3339Nano),
			}
			if r.Subject == "group.failed" {
				want["ce-time"] = body.FailedAt.UTC().Format(time.RFC3339Nano)
			}
			for k, v := range want {
				if got := r.Header.Get(k); got != v || v == "" {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}
