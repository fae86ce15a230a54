package main

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"provisioner/dingtalk/sim"
)

// eventsLastSeq is the events stream's last sequence: what was published to it.
func (p *pipeline) eventsLastSeq() uint64 {
	p.t.Helper()
	s, err := p.js.Stream(context.Background(), "PROVISIONER_EVENTS")
	if err != nil {
		p.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	return info.State.LastSeq
}

// A dead letter of a member DingTalk did not know, replayed once DingTalk
// knows them, yields exactly one group; a dry run changes nothing; an event
// that keeps failing is refused at its fourth replay unless forced.
func TestDLQReplay(t *testing.T) {
	p := startPipeline(t, sim.Config{UnknownUsers: []string{"ghost", "phantom"}, Seed: 3, Faults: sim.Faults{BusyRate: 0.2}})
	p.publish("project.created", `{"id":"joins-later","project_id":"P1","name":"Joins later","owner":"u1","members":["ghost"]}`, nats.Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	p.publish("event.scheduled", `{"id":"never-joins","event_id":"E1","title":"Never joins","organizer":"u1","attendees":["phantom"],"starts_at":"2026-12-01T09:00:00+08:00"}`, nil)
	failedTimes := func(id string, n int) {
		t.Helper()
		p.waitFor(id+" failed", func() bool { _, f := p.resultsFor(id); return len(f) >= n })
	}
	failedTimes("joins-later", 1)
	failedTimes("never-joins", 1)

	out, err := run(t, "dlq", "list", "-reason", "dingtalk_rejected")
	if err != nil || !strings.Contains(out, "joins-later") || !strings.Contains(out, "never-joins") || !strings.Contains(out, "2 dead letter(s)") {
		t.Fatalf("dlq list: %v\n%s", err, out)
	}
	if out, _ := run(t, "dlq", "list", "-subject", "event.scheduled"); strings.Contains(out, "joins-later") || !strings.Contains(out, "never-joins") {
		t.Errorf("dlq list -subject event.scheduled:\n%s", out)
	}
	inspectBefore, err := run(t, "inspect", "project.created", "joins-later")
	if err != nil || !strings.Contains(inspectBefore, "outcome:     failed") {
		t.Fatalf("inspect: %v\n%s", err, inspectBefore)
	}

	// A dry run says what it would do and changes nothing.
	seq := p.eventsLastSeq()
	out, err = run(t, "dlq", "replay", "-dry-run")
	if err != nil || !strings.Contains(out, "would be replayed") || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("dlq replay -dry-run: %v\n%s", err, out)
	}
	if after, _ := run(t, "inspect", "project.created", "joins-later"); p.eventsLastSeq() != seq || after != inspectBefore {
		t.Errorf("the dry run changed something: events %d → %d; record before:\n%s\nafter:\n%s", seq, p.eventsLastSeq(), inspectBefore, after)
	}
	if out, _ := run(t, "dlq", "list"); !strings.Contains(out, "2 dead letter(s)") {
		t.Errorf("after the dry run:\n%s", out)
	}

	// The member joins; the replay yields exactly one group.
	p.sim.AddUsers("ghost")
	if out, err := run(t, "dlq", "replay", "-subject", "project.created"); err != nil || !strings.Contains(out, "1 replayed") {
		t.Fatalf("dlq replay: %v\n%s", err, out)
	}
	p.waitFor("joins-later provisioned", func() bool { prov, _ := p.resultsFor("joins-later"); return len(prov) > 0 })
	groups := 0
	for _, g := range p.sim.Groups() {
		if g.Name == "Joins later" {
			groups++
		}
	}
	if prov, _ := p.resultsFor("joins-later"); len(prov) != 1 || groups != 1 {
		t.Errorf("after the replay: %d group.provisioned, %d groups named so; want exactly 1 of each", len(prov), groups)
	}
	if prov, _ := p.resultsFor("joins-later"); len(prov) == 1 && !strings.HasPrefix(prov[0].Header.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
		t.Errorf("the replay's result left the event's trace: %v", prov[0].Header)
	}
	if out, _ := run(t, "inspect", "project.created", "joins-later"); !strings.Contains(out, "outcome:     provisioned") || !strings.Contains(out, "replays:     1") {
		t.Errorf("inspect after the replay:\n%s", out)
	}

	// An event that keeps failing: three replays, then refused.
	for i := 1; i <= 3; i++ {
		if out, err := run(t, "dlq", "replay", "-subject", "event.scheduled"); err != nil || !strings.Contains(out, "1 replayed") {
			t.Fatalf("replay %d: %v\n%s", i, err, out)
		}
		failedTimes("never-joins", i+1)
		p.waitFor("the new letter", func() bool {
			out, _ := run(t, "dlq", "list", "-subject", "event.scheduled")
			return strings.Contains(out, "1 dead letter(s)")
		})
	}
	out, err = run(t, "dlq", "replay", "-subject", "event.scheduled")
	if err == nil || !strings.Contains(out, "1 refused") || !strings.Contains(out, "replayed 3 times already") {
		t.Fatalf("a fourth replay: %v\n%s", err, out)
	}
	if _, failed := p.resultsFor("never-joins"); len(failed) != 4 {
		t.Errorf("never-joins failed %d times, want 4 (the refused replay published nothing)", len(failed))
	}
	if out, err := run(t, "dlq", "replay", "-subject", "event.scheduled", "-force"); err != nil || !strings.Contains(out, "replay 4 (forced)") {
		t.Fatalf("a forced fourth replay: %v\n%s", err, out)
	}
	failedTimes("never-joins", 5)
}

// A mistake in how dlq or inspect is called is a usage error (exit 2) that
// names it, before any connection is tried.
func TestDLQAndInspectRefuseBadInput(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // nothing listens: a connection attempt would be exit 1
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "say list or replay"},
		{[]string{"dlq", "purge"}, `unknown subcommand "purge"`},
		{[]string{"dlq", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"dlq", "list", "-since", "yesterday"}, "-since must be"},
		{[]string{"dlq", "replay", "-seq", "1,x"}, `-seq must be letter sequences separated by commas (12,15), got "x"`},
		{[]string{"inspect", "project.created"}, "want a subject and an event id"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := run(t, tc.args...)
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (exit %d), want exit 2 saying %q", err, exitCode(err), tc.want)
			}
		})
	}
}
