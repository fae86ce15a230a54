package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"provisioner/budget"
	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/messages"
)

// ledgerEnv runs one worker on a project P-p1 whose group holds m1, and
// hears every result as it is published (a repeat's too, which the results
// stream drops as a copy).
type ledgerEnv struct {
	*env
	sub *nats.Subscription
}

func newLedgerEnv(t *testing.T, simCfg sim.Config) *ledgerEnv {
	t.Helper()
	e := &ledgerEnv{env: newEnv(t, simCfg)}
	var err error
	if e.sub, err = e.js.Conn().SubscribeSync("group.>"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.sub.Unsubscribe() })
	e.start(testConfig(), nil)
	e.send("project.created", project("p1", "m1"))
	return e
}

// send publishes an event and returns the next result published.
func (e *ledgerEnv) send(subject string, body map[string]any) result {
	e.t.Helper()
	e.publish(subject, body)
	m, err := e.sub.NextMsg(30 * time.Second)
	if err != nil {
		e.t.Fatalf("the result of %s %v: %v\n%s", subject, body["id"], err, e.logs.Tail(20))
	}
	r := result{Subject: m.Subject, Raw: m.Data}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		e.t.Fatalf("result %s: %v", m.Data, err)
	}
	return r
}

// update is project P-p1's update id at version v, listing members.
func update(id string, v int, members ...string) map[string]any {
	return map[string]any{"id": id, "project_id": "P-p1", "version": v, "members": members}
}

// stepKept says whether the update id has a step record of its own.
func (e *ledgerEnv) stepKept(id string) bool {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), "provisioner_state")
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = kv.Get(context.Background(), messages.Key("project.updated", id))
	return err == nil
}

// An update's repeat (the same event published again, past the stream's
// duplicate window) publishes the update's first result, byte for byte, and
// calls DingTalk no more, however many updates of its project came since:
// from the project record's ledger, or from the step record an update
// writes when the ledger is full or it failed.
func TestARepeatedUpdatePublishesItsFirstResult(t *testing.T) {
	tests := []struct {
		name   string
		simCfg sim.Config
		before int  // updates before the repeated one (each adds a member)
		after  int  // updates after it
		failed bool // the repeated update fails (it adds a user DingTalk does not know)
		step   bool // it has a step record of its own
		later  bool // so do the updates after it
	}{
		{name: "after later updates of its project", after: 3},
		{name: "past the ledger's room", before: 17, after: 2, step: true, later: true},
		{name: "that failed", simCfg: sim.Config{UnknownUsers: []string{"ghost"}}, after: 2, failed: true, step: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLedgerEnv(t, tt.simCfg)
			listed := []string{"m1"}
			v := 1
			next := func(id string) map[string]any {
				v++
				listed = append(listed, fmt.Sprintf("m%d", v))
				return update(id, v, listed...)
			}
			for i := range tt.before {
				e.send("project.updated", next(fmt.Sprintf("b%d", i)))
			}
			ev := next("u")
			if tt.failed {
				ev = update("u", v, append(slices.Clone(listed[:len(listed)-1]), "ghost")...)
				listed = listed[:len(listed)-1]
			}
			first := e.send("project.updated", ev)
			if failed := first.Error != nil; failed != tt.failed {
				t.Fatalf("the update's result: %s, want failed %v", first.Raw, tt.failed)
			}
			for i := range tt.after {
				e.send("project.updated", next(fmt.Sprintf("a%d", i)))
			}
			calls := e.sim.Stats().Calls
			grp, _ := e.sim.Group(first.ChatID)

			again := e.send("project.updated", ev)
			if again.Subject != first.Subject || !bytes.Equal(again.Raw, first.Raw) {
				t.Errorf("the repeat published\n%s %s\nwant the first result\n%s %s", again.Subject, again.Raw, first.Subject, first.Raw)
			}
			if now := e.sim.Stats().Calls; !maps.Equal(now, calls) {
				t.Errorf("the repeat called DingTalk: %v, then %v", calls, now)
			}
			if g, _ := e.sim.Group(first.ChatID); !slices.Equal(g.Members, grp.Members) {
				t.Errorf("the repeat changed the group: %v, then %v", grp.Members, g.Members)
			}
			if got := e.stepKept("u"); got != tt.step {
				t.Errorf("the update has a step record of its own: %v, want %v", got, tt.step)
			}
			if got := e.stepKept("a0"); got != tt.later {
				t.Errorf("a later update has a step record of its own: %v, want %v", got, tt.later)
			}
		})
	}
}

// A project whose record a release without the ledger wrote keeps its
// repeats: the result of an update that release worked is in the update's
// step record, and a repeat of it finds it there (the record says step
// records may hold results), before and after this release's first update
// of the project starts its ledger.
func TestAnOlderReleasesUpdateIsRepeatedFromItsStepRecord(t *testing.T) {
	e := newLedgerEnv(t, sim.Config{})
	ctx := context.Background()
	ev := update("u", 2, "m1", "m2")
	first := e.send("project.updated", ev)

	// What the older release leaves: the update's result in its step
	// record, and the project's record without the ledger (it does not
	// know the fields and drops them as it writes the record for a later
	// event).
	state, err := e.js.KeyValue(ctx, "provisioner_state")
	if err != nil {
		t.Fatal(err)
	}
	step, err := json.Marshal(map[string]any{"schema": 2, "step": "done", "subject": "project.updated", "event_id": "u",
		"holder": "older/1", "lease_until": time.Time{}, "stream_seq": 2, "first_attempt_at": time.Now().UTC(), "attempts": 1,
		"result_subject": first.Subject, "result": json.RawMessage(first.Raw)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.Put(ctx, messages.Key("project.updated", "u"), step); err != nil {
		t.Fatal(err)
	}
	projects, err := e.js.KeyValue(ctx, "provisioner_projects")
	if err != nil {
		t.Fatal(err)
	}
	key := messages.ProjectKey(&messages.Event{Kind: messages.ProjectCreated, RefID: "P-p1"})
	entry, err := projects.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ledger", "answers", "steps_until"} {
		if _, ok := rec[f]; !ok && f != "steps_until" {
			t.Fatalf("the record has no %q: %s", f, entry.Value())
		}
		delete(rec, f)
	}
	rec["last_event"], rec["last_result"] = "project.updated-older", json.RawMessage(`{}`)
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := projects.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	calls := e.sim.Stats().Calls
	for i, ev := range []map[string]any{ev, update("w", 3, "m1", "m2", "m3"), ev} {
		r := e.send("project.updated", ev)
		if i == 1 {
			var u struct{ Added []string }
			if err := json.Unmarshal(r.Raw, &u); err != nil || r.Error != nil || !slices.Equal(u.Added, []string{"m3"}) {
				t.Fatalf("an update of the older release's project: %s", r.Raw)
			}
			calls = e.sim.Stats().Calls
			continue
		}
		if !bytes.Equal(r.Raw, first.Raw) {
			t.Errorf("repeat %d published\n%s\nwant\n%s", i, r.Raw, first.Raw)
		}
		if now := e.sim.Stats().Calls; !maps.Equal(now, calls) {
			t.Errorf("repeat %d called DingTalk: %v, then %v", i, calls, now)
		}
	}
}

// A worker that dies while an update's change is on the wire, its step in
// memory only, leaves the project held: the next delivery takes it once
// the lease runs out, reads the group (the change may have landed), and
// publishes one result without changing the group again.
func TestAnUpdateWhoseWorkerDiedIsFinishedOnce(t *testing.T) {
	natstest.Long(t)
	e := newEnv(t, sim.Config{})
	cfg := testConfig()
	cfg.AckWait = 2 * time.Second
	g := newGate(e.groups)
	crashed := e.start(cfg, g)
	e.publish("project.created", project("p1", "m1"))
	created := e.results(1)[0]
	g.holdChange = true
	e.publish("project.updated", update("u", 2, "m1", "m2"))
	<-g.arrived
	crashed.kill()
	close(g.release)

	e.start(cfg, nil)
	rs := e.results(2)
	if rs[1].Error != nil || rs[1].Subject != "group.updated" {
		t.Fatalf("the update's result: %s", rs[1].Raw)
	}
	e.waitFor("every message settled", func() bool { return e.pending() == 0 })
	if n := e.stored("PROVISIONER_RESULTS"); n != 2 {
		t.Errorf("%d results, want 2", n)
	}
	grp, _ := e.sim.Group(created.ChatID)
	if want := []string{"m1", "m2", "owner-p1"}; !slices.Equal(sorted(grp.Members), want) {
		t.Errorf("the group holds %v, want %v", grp.Members, want)
	}
	if n := e.sim.Stats().Calls[v1Mode.add]; n != 1 {
		t.Errorf("%s called %d times, want once: the change landed before the worker died", v1Mode.add, n)
	}
}

// An update handed back while its step is in memory (DingTalk's quota ran
// out under its change) writes its step for the next delivery: the call
// it made counts in its result, and it is finished once when work resumes.
func TestAnUpdateHandedBackKeepsItsCalls(t *testing.T) {
	natstest.Long(t)
	ctx := context.Background()
	e := newLedgerEnv(t, sim.Config{})
	e.sim.SetMonthlyQuota(1)
	e.send("project.updated", update("u0", 2, "m1", "m2")) // the quota's one call
	e.publish("project.updated", update("u", 3, "m1", "m2", "m3"))
	keeper, err := budget.Open(ctx, e.js, budget.Options{Bucket: "provisioner_budget", Consumer: "provisioner", Subject: "project.created"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor("work paused", func() bool {
		st, err := keeper.Status(ctx)
		return err == nil && st.Paused != nil && st.ConsumerPaused
	})
	e.waitFor("the update's step written", func() bool { return e.stepKept("u") })

	e.sim.SetMonthlyQuota(0)
	if err := keeper.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := e.sub.NextMsg(60 * time.Second)
	if err != nil {
		t.Fatalf("the update's result: %v\n%s", err, e.logs.Tail(20))
	}
	var r struct {
		Source   string   `json:"source_id"`
		Added    []string `json:"added"`
		Attempts int      `json:"attempts"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil || m.Subject != "group.updated" || r.Source != "u" || !slices.Equal(r.Added, []string{"m3"}) {
		t.Fatalf("the update's result on %s: %s (%v)", m.Subject, m.Data, err)
	}
	if r.Attempts != 2 {
		t.Errorf("attempts %d, want 2: the refused call and the one that changed the group", r.Attempts)
	}
	e.waitFor("every message settled", func() bool { return e.pending() == 0 })
	if n := e.stored("PROVISIONER_RESULTS"); n != 3 {
		t.Errorf("%d results, want 3", n)
	}
}
