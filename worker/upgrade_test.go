package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/messages"
	"provisioner/worker"
)

// fixtureRetention is the RETENTION the upgrade fixture was captured with
// (see testdata/upgrade/capture_test.go.txt): long, so that its step records
// never expire as the fixture ages.
const fixtureRetention = 50 * 365 * 24 * time.Hour

// upgradeEnv is a world on the store the previous release left
// (testdata/upgrade: a producer's stream HR_EVENTS capturing the two
// creation subjects, a downstream stream NOTIFY capturing group.provisioned
// and group.failed, 16 groups made, one creation failed) and a simulator
// holding the groups it made.
func upgradeEnv(t *testing.T) (*env, []sim.Group) {
	t.Helper()
	ns := natstest.ServerAt(t, natstest.CopyDir(t, "testdata/upgrade/jetstream"))
	e := newEnvOn(t, ns, sim.Config{}, v1Mode)
	data, err := os.ReadFile("testdata/upgrade/groups.json")
	if err != nil {
		t.Fatal(err)
	}
	var old []sim.Group
	if err := json.Unmarshal(data, &old); err != nil {
		t.Fatal(err)
	}
	e.sim.Restore(old...)
	return e, old
}

func upgradeConfig() worker.Config {
	cfg := testConfig()
	cfg.Retention, cfg.CheckInterval = fixtureRetention, 50*time.Millisecond
	return cfg
}

// TestUpgradeFromReleaseBeforeProjectRecords is the upgrade: this
// release starts on what the previous one left, provisions at once from the
// producer's stream, picks up the lifecycle subjects when the operator adds
// them (no restart), and then updates and closes the groups the previous
// release made, in place: no second group.
func TestUpgradeFromReleaseBeforeProjectRecords(t *testing.T) {
	e, old := upgradeEnv(t)
	r := e.start(upgradeConfig(), nil)
	missing, command := r.w.Uncaptured()
	if want := []string{"event.cancelled", "event.updated", "project.closed", "project.updated"}; !slices.Equal(missing, want) {
		t.Fatalf("uncaptured = %v, want %v", missing, want)
	}
	if !strings.Contains(command, "nats stream edit HR_EVENTS --subjects") || !strings.Contains(command, "project.updated") {
		t.Errorf("command = %q", command)
	}
	if n := countLines(e.logs.Lines(), `"projects":16,"time"`); n != 1 {
		t.Errorf("%d start lines saying 16 project records were built, want 1:\n%s", n, e.logs.Tail(30))
	}

	// An event on a subject no stream captures is refused at the producer, not lost unseen.
	data, _ := json.Marshal(map[string]any{"id": "early", "project_id": "OLD-1", "members": []string{"b"}})
	if _, err := e.js.Publish(context.Background(), "project.updated", data); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("publishing on an uncaptured subject: %v, want %v", err, jetstream.ErrNoStreamResponse)
	}

	// It provisions from the producer's stream at once.
	e.publish("project.created", project("new1", "m1"))
	res := e.readStream("NOTIFY", 18) // the previous release's 17 results and this one
	if last := res[len(res)-1]; last.Subject != "group.provisioned" || last.ProjectID != "P-new1" {
		t.Fatalf("last result %s %s, want group.provisioned for P-new1", last.Subject, last.ProjectID)
	}

	// The operator adds the lifecycle subjects to the producer's stream.
	ctx := context.Background()
	s, err := e.js.Stream(ctx, "HR_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	scfg := s.CachedInfo().Config
	scfg.Subjects = append(scfg.Subjects, missing...)
	if _, err := e.js.UpdateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the worker to consume the added subjects", func() bool { m, _ := r.w.Uncaptured(); return len(m) == 0 })

	// Every old group is updated (one member out, one in, a new name) and closed.
	for _, g := range old {
		i := strings.TrimPrefix(strings.TrimPrefix(g.Name, "Old project "), "Old event ")
		if strings.HasPrefix(g.Name, "Old event") {
			e.publish("event.updated", map[string]any{"id": "upd-e" + i, "event_id": "OLD-E" + i, "title": "Moved event " + i, "attendees": []string{"y", "new" + i}})
		} else {
			e.publish("project.updated", map[string]any{"id": "upd-p" + i, "project_id": "OLD-" + i, "name": "Renamed " + i, "members": []string{"b", "m" + i, "new" + i}})
		}
	}
	e.readStream("PROVISIONER_RESULTS", len(old))
	for _, g := range old {
		i := strings.TrimPrefix(strings.TrimPrefix(g.Name, "Old project "), "Old event ")
		if strings.HasPrefix(g.Name, "Old event") {
			e.publish("event.cancelled", map[string]any{"id": "close-e" + i, "event_id": "OLD-E" + i})
		} else {
			e.publish("project.closed", map[string]any{"id": "close-p" + i, "project_id": "OLD-" + i})
		}
	}
	got := e.readStream("PROVISIONER_RESULTS", 2*len(old))
	for _, r := range got {
		if r.Subject != "group.updated" && r.Subject != "group.closed" {
			t.Errorf("%s for %s%s: %s", r.Subject, r.ProjectID, r.EventID, r.Raw)
		}
	}
	if st := e.sim.Stats(); st.GroupsCreated != 1 {
		t.Errorf("%d groups created, want 1 (P-new1): the old projects got second groups", st.GroupsCreated)
	}
	for _, o := range old {
		g, _ := e.sim.Group(o.ChatID)
		gone, added := "a", "new"
		if strings.HasPrefix(o.Name, "Old event") {
			gone = "x"
		}
		if slices.Contains(g.Members, gone) || !slices.ContainsFunc(g.Members, func(m string) bool { return strings.HasPrefix(m, added) }) {
			t.Errorf("group %q members %v: want %s removed and a new member added", o.Name, g.Members, gone)
		}
		if !strings.HasPrefix(g.Name, "[已结束] ") || g.Settings["chatBannedType"] != 1 {
			t.Errorf("group %q is %q (muted %d), want it archived", o.Name, g.Name, g.Settings["chatBannedType"])
		}
	}
}

// TestUpgradeKeepsANewerConsumer: a consumer a newer release configured
// (a higher contract in its metadata, a wider filter) is left as it is, and
// an event on a subject this release does not know is handed back, not failed.
func TestUpgradeKeepsANewerConsumer(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ctx := context.Background()
	first := e.start(testConfig(), nil)
	first.stop(t)
	st, err := e.js.Stream(ctx, "PROVISIONER_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	scfg := st.CachedInfo().Config
	scfg.Subjects = append(scfg.Subjects, "project.archived")
	if _, err := e.js.UpdateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	newer := jetstream.ConsumerConfig{Durable: "provisioner", FilterSubjects: append(kindNames(), "project.archived"), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 5 * time.Second, MaxDeliver: -1, MaxAckPending: 1000, Metadata: map[string]string{"provisioner_contract": fmt.Sprint(messages.Contract + 1)}}
	if _, err := e.js.UpdateConsumer(ctx, "PROVISIONER_EVENTS", newer); err != nil {
		t.Fatal(err)
	}
	r := e.start(testConfig(), nil)
	e.publish("project.archived", map[string]any{"id": "arch1", "project_id": "P-1"})
	e.publish("project.created", project("c1", "m1"))
	e.readStream("PROVISIONER_RESULTS", 1)
	e.waitFor("the unknown kind handed back", func() bool {
		return countLines(e.logs.Lines(), `left for a newer release: subject \"project.archived\"`) > 0
	})
	r.stop(t)
	cons, err := e.js.Consumer(ctx, "PROVISIONER_EVENTS", "provisioner")
	if err != nil {
		t.Fatal(err)
	}
	if f := cons.CachedInfo().Config.FilterSubjects; !slices.Contains(f, "project.archived") {
		t.Errorf("filter narrowed to %v", f)
	}
	if n := e.stored("PROVISIONER_DEAD_LETTERS"); n != 0 {
		t.Errorf("%d dead letters, want 0: the unknown kind was failed", n)
	}
	if res := e.results(1); len(res) != 1 {
		t.Errorf("%d results, want only the creation's", len(res))
	}
}

func kindNames() []string {
	var out []string
	for _, k := range messages.Kinds() {
		out = append(out, string(k))
	}
	return out
}

// TestRecordsOfANewerReleaseAreLeftAlone: a project record or a step record
// with a schema newer than this release's is neither read further nor
// written, and its event is handed back for a newer worker, not failed.
func TestRecordsOfANewerReleaseAreLeftAlone(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		bucket string
		key    string
		event  map[string]any
		subj   string
	}{
		{"project record", "provisioner_projects", messages.ProjectKey(&messages.Event{Kind: messages.ProjectUpdated, RefID: "P-future"}),
			map[string]any{"id": "u-future", "project_id": "P-future", "members": []string{"m1"}}, "project.updated"},
		{"step record", "provisioner_state", messages.Key("project.updated", "u-future"),
			map[string]any{"id": "u-future", "project_id": "P-future", "members": []string{"m1"}}, "project.updated"},
		{"step in a project record", "provisioner_projects", messages.ProjectKey(&messages.Event{Kind: messages.ProjectCreated, RefID: "P-future"}),
			project("future", "m1"), "project.created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sim.Config{})
			e.start(testConfig(), nil)
			kv, err := e.js.KeyValue(ctx, tt.bucket)
			if err != nil {
				t.Fatal(err)
			}
			future := []byte(`{"schema":99,"step":"something new","ref_id":"P-future"}`)
			if tt.name == "step in a project record" {
				// As a creation resumed later finds it: its step from a newer release.
				future = []byte(`{"schema":3,"ref_id":"P-future","creator":"` + messages.Key("project.created", "future") +
					`","step":{"schema":99,"step":"something new"}}`)
			}
			rev, err := kv.Put(ctx, tt.key, future)
			if err != nil {
				t.Fatal(err)
			}
			e.publish(tt.subj, tt.event)
			e.waitFor("the event handed back", func() bool {
				return countLines(e.logs.Lines(), "left for a newer release") > 0
			})
			entry, err := kv.Get(ctx, tt.key)
			if err != nil || entry.Revision() != rev || string(entry.Value()) != string(future) {
				t.Errorf("the newer record was written: revision %d, want %d", entry.Revision(), rev)
			}
			if n := e.stored("PROVISIONER_RESULTS") + e.stored("PROVISIONER_DEAD_LETTERS"); n != 0 {
				t.Errorf("%d results and dead letters, want none: the event must wait for a newer worker", n)
			}
		})
	}
}

// TestANarrowingByAnOlderReleaseIsUndone: during a rolling upgrade an older
// worker that restarts sets the events stream and the consumer back to the
// two creation subjects it knows; a worker of this release puts the others
// back within its check interval, and an update published then is worked.
func TestANarrowingByAnOlderReleaseIsUndone(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ctx := context.Background()
	cfg := testConfig()
	cfg.CheckInterval = 50 * time.Millisecond
	e.start(cfg, nil)
	e.publish("project.created", project("n1", "m1"))
	e.results(1)
	old := []string{"event.scheduled", "project.created"}
	st, err := e.js.Stream(ctx, "PROVISIONER_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	scfg := st.CachedInfo().Config
	scfg.Subjects = old
	if _, err := e.js.UpdateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	narrow := jetstream.ConsumerConfig{Durable: "provisioner", FilterSubjects: old, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 5 * time.Second, MaxDeliver: -1, MaxAckPending: 1000}
	if _, err := e.js.UpdateConsumer(ctx, "PROVISIONER_EVENTS", narrow); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the stream and the consumer widened again", func() bool {
		s, err := e.js.Stream(ctx, "PROVISIONER_EVENTS")
		if err != nil || len(s.CachedInfo().Config.Subjects) != 6 {
			return false
		}
		c, err := e.js.Consumer(ctx, "PROVISIONER_EVENTS", "provisioner")
		return err == nil && len(c.CachedInfo().Config.FilterSubjects) == 6
	})
	e.publish("project.updated", map[string]any{"id": "u1", "project_id": "P-n1", "members": []string{"m2"}})
	if r := e.results(2)[1]; r.Subject != "group.updated" {
		t.Fatalf("update after the widening: %s", r.Raw)
	}
}

// TestUpgradeWhenTheOriginalEventsAreGone: the producer's stream no longer
// holds the creations the previous release worked (a short MaxAge, say), so
// the records built from the step records do not know the members. The
// first update of each reads its group once: the members it finds that the
// update lists become managed, the others are left alone.
func TestUpgradeWhenTheOriginalEventsAreGone(t *testing.T) {
	e, old := upgradeEnv(t)
	ctx := context.Background()
	s, err := e.js.Stream(ctx, "HR_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	scfg := s.CachedInfo().Config
	scfg.Subjects = kindNames()
	if _, err := e.js.UpdateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	e.start(upgradeConfig(), nil)
	var projects []sim.Group
	for _, g := range old {
		if strings.HasPrefix(g.Name, "Old project ") {
			projects = append(projects, g)
		}
	}
	for _, g := range projects {
		i := strings.TrimPrefix(g.Name, "Old project ")
		e.publish("project.updated", map[string]any{"id": "upd-p" + i, "project_id": "OLD-" + i, "members": []string{"b", "m" + i, "new" + i}})
	}
	for _, r := range e.readStream("PROVISIONER_RESULTS", len(projects)) {
		if r.Subject != "group.updated" {
			t.Errorf("%s: %s", r.Subject, r.Raw)
		}
	}
	if reads := e.sim.Stats().Calls[v1Mode.read]; reads != len(projects) {
		t.Errorf("%d reads of a group, want one per project (%d)", reads, len(projects))
	}
	for _, o := range projects {
		g, _ := e.sim.Group(o.ChatID)
		i := strings.TrimPrefix(o.Name, "Old project ")
		if !slices.Contains(g.Members, "a") || !slices.Contains(g.Members, "new"+i) {
			t.Errorf("group %q members %v: want a (not listed, so not managed) kept and new%s added", o.Name, g.Members, i)
		}
	}
	if st := e.sim.Stats(); st.GroupsCreated != 0 {
		t.Errorf("%d groups created, want 0", st.GroupsCreated)
	}
}

// TestAnUpdateFindsAGroupAnOlderWorkerJustMade: during a rolling upgrade a
// worker of the release before project records creates a group after this
// release's last migration pass; an update of that project at once (long
// before the next pass) still finds it, through a pass of its own.
func TestAnUpdateFindsAGroupAnOlderWorkerJustMade(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ctx := context.Background()
	cfg := testConfig()
	cfg.CheckInterval = time.Hour
	e.start(cfg, nil)
	e.sim.Restore(sim.Group{ChatID: "chatlate", OpenConversationID: "cidlate", Name: "Late", Owner: "o", Members: []string{"o", "a", "b"}, Settings: map[string]int{}})
	// The step record as release 91a7469 writes it once the group is provisioned.
	result, _ := json.Marshal(messages.Provisioned{ID: messages.Key("project.created", "late-1"), SourceSubject: "project.created", SourceID: "late-1",
		ProjectID: "P-late", ChatID: "chatlate", OpenConversationID: "cidlate", Name: "Late", Owner: "o", MemberCount: 3, Attempts: 2})
	step, _ := json.Marshal(map[string]any{"schema": 2, "step": "done", "subject": "project.created", "event_id": "late-1", "holder": "old/1",
		"lease_until": time.Now(), "stream_seq": 0, "first_attempt_at": time.Now(), "attempts": 2, "chatid": "chatlate",
		"open_conversation_id": "cidlate", "added": 3, "invite_url": "https://qr.dingtalk.com/x", "result_subject": "group.provisioned",
		"result": json.RawMessage(result)})
	kv, err := e.js.KeyValue(ctx, "provisioner_state")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, messages.Key("project.created", "late-1"), step); err != nil {
		t.Fatal(err)
	}
	e.publish("project.updated", map[string]any{"id": "late-u", "project_id": "P-late", "name": "Later", "members": []string{"a", "c"}})
	r := e.results(1)[0]
	if r.Subject != "group.updated" || r.ChatID != "chatlate" {
		t.Fatalf("update: %s, want group.updated of chatlate", r.Raw)
	}
	if g, _ := e.sim.Group("chatlate"); g.Name != "Later" || !slices.Contains(g.Members, "c") || e.sim.Stats().GroupsCreated != 0 {
		t.Errorf("group %+v, %d groups created: want it renamed with c added, and no new group", g, e.sim.Stats().GroupsCreated)
	}
}
