package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/batch"
	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/messages"
)

// onboardingCSV writes a season's batch: rows rows, of which the ones at
// invalid (0-based) are invalid and the ones at ghosts name a member
// DingTalk does not know. It returns the file and the problems -dry-run must
// print, one per invalid row.
func onboardingCSV(t *testing.T, rows int, invalid map[int]string, ghosts []int) (path string, problems []string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("id,name,owner,members,project_id,group.searchable\n")
	for i := range rows {
		line := i + 2
		name, owner, members, searchable := fmt.Sprintf("新项目 %d", i), "u1", fmt.Sprintf("u2;u%d", 3+i%7), ""
		if n := slices.Index(ghosts, i); n >= 0 {
			members += fmt.Sprintf(";ghost%d", n)
		}
		switch invalid[i] {
		case "owner":
			owner = ""
			problems = append(problems, fmt.Sprintf("line %d, column 3: owner must not be empty", line))
		case "name":
			name = " "
			problems = append(problems, fmt.Sprintf("line %d, column 2: name must not be empty", line))
		case "member":
			members = "u2;u 7"
			problems = append(problems, fmt.Sprintf(`line %d, column 4: members[1] must be a non-empty userid without white space, got "u 7"`, line))
		case "comma":
			members = `"u2,u3"`
			problems = append(problems, fmt.Sprintf(`line %d, column 4: members are separated by ';', and "u2,u3" has a ','`, line))
		case "setting":
			searchable = "2"
			problems = append(problems, fmt.Sprintf("line %d, column 6: group.searchable must be 0 or 1, got 2", line))
		}
		fmt.Fprintf(&b, "season-%d,%s,%s,%s,P-%d,%s\n", i, name, owner, members, i, searchable)
	}
	path = filepath.Join(t.TempDir(), "onboarding.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, problems
}

// readResults reads an output CSV, checking its header.
func readResults(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs[0], batch.OutputColumns) {
		t.Fatalf("header %q, want %q", recs[0], batch.OutputColumns)
	}
	return recs[1:]
}

// eventsByMsgID counts the events stream's messages by Nats-Msg-Id.
func (p *pipeline) eventsByMsgID() map[string]int {
	p.t.Helper()
	ctx := context.Background()
	s, err := p.js.Stream(ctx, "PROVISIONER_EVENTS")
	if err != nil {
		p.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	out := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			p.t.Fatal(err)
		}
		out[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	return out
}

// setEventsStream changes the events stream's limits for a test.
func (p *pipeline) setEventsStream(change func(*jetstream.StreamConfig)) {
	p.t.Helper()
	ctx := context.Background()
	s, err := p.js.Stream(ctx, "PROVISIONER_EVENTS")
	if err != nil {
		p.t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	change(&cfg)
	if _, err := p.js.UpdateStream(ctx, cfg); err != nil {
		p.t.Fatal(err)
	}
}

// startCommand runs provisioner as a separate process (this test binary,
// told by TestMain to be the command), so that it can be killed.
func startCommand(t *testing.T, args ...string) (*exec.Cmd, *natstest.LogBuffer) {
	t.Helper()
	out := &natstest.LogBuffer{}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), beCommandEnv+"=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out
}

// The acceptance run: a 500-row season with 5 invalid rows and 3
// members DingTalk does not know, against provisioner run with busy answers.
// A dry run names exactly the invalid rows; without -skip-invalid nothing is
// published; a run killed midway and run again publishes no event twice and
// completes the CSV; the finished batch run again publishes nothing and
// costs no DingTalk call.
func TestBatchOnboarding(t *testing.T) {
	t.Setenv("DINGTALK_QPS", "1000") // the simulator has no limit here: let the worker go
	ghostIDs := []string{"ghost0", "ghost1", "ghost2"}
	p := startPipeline(t, sim.Config{UnknownUsers: ghostIDs, Seed: 11, Faults: sim.Faults{BusyRate: 0.2}})
	invalid := map[int]string{37: "owner", 120: "member", 211: "comma", 333: "setting", 498: "name"}
	ghosts := []int{9, 250, 489}
	file, wantProblems := onboardingCSV(t, 500, invalid, ghosts)
	out := filepath.Join(filepath.Dir(file), "results.csv")
	// Any event published twice would be stored twice, however soon.
	p.setEventsStream(func(c *jetstream.StreamConfig) { c.Duplicates = 100 * time.Millisecond })

	t.Run("dry run", func(t *testing.T) {
		var stdout, stderr natstest.LogBuffer
		err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), []string{"batch", "-f", file, "-dry-run"})
		if exitCode(err) != 1 || err == nil || !strings.Contains(err.Error(), "5 of 500 rows are invalid") {
			t.Errorf("dry run: %v, want exit 1 saying 5 of 500 rows are invalid", err)
		}
		if got := strings.Split(strings.TrimSpace(stdout.String()), "\n"); !slices.Equal(got, wantProblems) {
			t.Errorf("dry run printed:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(wantProblems, "\n"))
		}
	})
	t.Run("invalid rows stop the batch", func(t *testing.T) {
		var stdout, stderr natstest.LogBuffer
		err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), []string{"batch", "-f", file})
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "nothing was published") {
			t.Errorf("without -skip-invalid: %v", err)
		}
		if n := len(p.eventsByMsgID()); n != 0 {
			t.Errorf("%d events published", n)
		}
	})

	// Midway: the stream takes 200 events and refuses the rest (as a full
	// stream does), so the command is publishing, retrying, when it is killed.
	const stored = 200
	p.setEventsStream(func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = stored, jetstream.DiscardNew })
	cmd, cmdOut := startCommand(t, "batch", "-f", file, "-o", out, "-skip-invalid", "-progress", "50ms")
	p.waitFor("the killed run to have published 200 events", func() bool {
		return len(p.eventsByMsgID()) == stored && strings.Contains(cmdOut.String(), `"phase":"publishing"`)
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the killed run wrote %s (%v)", out, err)
	}
	p.setEventsStream(func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = -1, jetstream.DiscardOld })

	var stderr natstest.LogBuffer
	err := (&Main{Stdout: &stderr, Stderr: &stderr}).Run(context.Background(), []string{"batch", "-f", file, "-o", out, "-skip-invalid", "-progress", "100ms", "-wait", "20s"})
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "of 500 rows, 3 failed and 5 are invalid") {
		t.Fatalf("the run again: %v, want exit 1 for 3 failed and 5 invalid\n%s\nworker:\n%s", err, stderr.String(), lastLines(p.logs.String(), 30))
	}
	t.Logf("the second run said: %s", lastLines(stderr.String(), 2))
	events := p.eventsByMsgID()
	if len(events) != 495 {
		t.Errorf("%d distinct events in the stream, want 495", len(events))
	}
	for id, n := range events {
		if n != 1 {
			t.Errorf("event %s was published %d times", id, n)
		}
	}

	recs := readResults(t, out)
	if len(recs) != 500 {
		t.Fatalf("%d result rows, want 500", len(recs))
	}
	count := map[string]int{}
	for i, r := range recs {
		line, id, status, chatid, link, members, reason, message := r[0], r[1], r[2], r[3], r[4], r[5], r[7], r[8]
		count[status]++
		if want := fmt.Sprint(i + 2); line != want || id != fmt.Sprintf("season-%d", i) {
			t.Errorf("result %d: line %s, id %s: want line %s, in input order", i, line, id, want)
		}
		switch {
		case invalid[i] != "":
			if status != "invalid" || reason != "invalid_event" || !strings.HasPrefix(message, fmt.Sprintf("line %d, column ", i+2)) {
				t.Errorf("line %s: %q", line, r)
			}
		case slices.Contains(ghosts, i):
			if status != "failed" || reason != "dingtalk_rejected" || !strings.Contains(message, "ghost") || chatid != "" {
				t.Errorf("line %s: %q, want failed with DingTalk's reason", line, r)
			}
		default:
			if status != "provisioned" || chatid == "" || !strings.HasPrefix(link, "https://qr.dingtalk.com/") || members != "3" {
				t.Errorf("line %s: %q, want provisioned with an invite link", line, r)
			}
		}
	}
	if count["provisioned"] != 492 || count["failed"] != 3 || count["invalid"] != 5 {
		t.Errorf("statuses %v, want 492 provisioned, 3 failed, 5 invalid", count)
	}
	if p.sim.Stats().Busy == 0 {
		t.Error("the simulator answered no busy")
	}

	// Run again, even once the events have left their stream (a work-queue
	// stream, or one purged), the results alone keep every row from being
	// published again.
	t.Run("a finished batch run again", func(t *testing.T) {
		calls, before := total(p.sim.Stats().Calls), readResults(t, out)
		for _, purged := range []bool{false, true} {
			if purged {
				s, _ := p.js.Stream(context.Background(), "PROVISIONER_EVENTS")
				if err := s.Purge(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			events := len(p.eventsByMsgID())
			var stderr natstest.LogBuffer
			err := (&Main{Stdout: &stderr, Stderr: &stderr}).Run(context.Background(), []string{"batch", "-f", file, "-o", out, "-skip-invalid"})
			if exitCode(err) != 1 {
				t.Errorf("exit %d (%v), want 1: rows failed", exitCode(err), err)
			}
			if after := len(p.eventsByMsgID()); after != events || total(p.sim.Stats().Calls) != calls {
				t.Errorf("events purged %v: %d events and %d DingTalk calls after, %d and %d before", purged, after, total(p.sim.Stats().Calls), events, calls)
			}
		}
		if after := readResults(t, out); !slices.EqualFunc(after, before, slices.Equal) {
			t.Error("the results changed")
		}
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Without a worker, nothing has a result: -wait and Ctrl-C write what is
// known, pending rows marked, and exit 1; results published meanwhile are
// picked up by the next run, which publishes nothing again.
func TestBatchWritesWhatIsKnown(t *testing.T) {
	ns := natstest.Server(t)
	js, _ := jetstream.New(natstest.Connect(t, ns))
	ctx := context.Background()
	for name, subjects := range map[string][]string{"EVENTS": {"project.created", "event.scheduled"}, "RESULTS": {"group.provisioned", "group.failed"}} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects}); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("NATS_URL", ns.ClientURL())
	file := filepath.Join(t.TempDir(), "season.jsonl")
	rows := `{"id":"a","project_id":"P1","name":"Apollo","owner":"u1","members":["u2"]}
{"id":"b","project_id":"P2","name":"Borealis","owner":"u1","members":["u2"]}

{"project_id":"P3","name":"Cassini","owner":"u1","members":["u2"]}
`
	if err := os.WriteFile(file, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	statuses := func(csvText string) []string {
		t.Helper()
		recs, err := csv.NewReader(strings.NewReader(csvText)).ReadAll()
		if err != nil || len(recs) != 4 {
			t.Fatalf("results %q: %v", csvText, err)
		}
		var out []string
		for _, r := range recs[1:] {
			out = append(out, r[0]+" "+r[2]+" "+r[3])
		}
		return out
	}

	var stdout, stderr natstest.LogBuffer
	err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(ctx, []string{"batch", "-f", file, "-o", "-", "-wait", "100ms"})
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "3 of 3 rows have no result yet") {
		t.Errorf("-wait: %v, want exit 1 with 3 rows pending", err)
	}
	if got, want := statuses(stdout.String()), []string{"1 pending ", "2 pending ", "4 pending "}; !slices.Equal(got, want) {
		t.Errorf("-wait wrote %q, want %q", got, want)
	}

	// The worker's results for a and b, as it would publish them.
	for subject, body := range map[string]string{
		"group.provisioned": fmt.Sprintf(`{"id":%q,"source_id":"a","chatid":"chat1","invite_url":"https://qr.dingtalk.com/x","member_count":2}`, messages.Key("project.created", "a")),
		"group.failed":      fmt.Sprintf(`{"id":%q,"source_id":"b","error":{"reason":"dingtalk_rejected","message":"no"}}`, messages.Key("project.created", "b")),
	} {
		if _, err := js.Publish(ctx, subject, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out.csv")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stderr = natstest.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- (&Main{Stdout: &stderr, Stderr: &stderr}).Run(cctx, []string{"batch", "-f", file, "-o", out, "-progress", "10ms"})
	}()
	natstest.Eventually(t, time.Minute, "a progress line waiting with a and b done", func() bool {
		return strings.Contains(stderr.String(), `"phase":"waiting for results","rows":3,"provisioned":1,"updated":0,"failed":1`)
	}, stderr.String)
	cancel() // Ctrl-C
	if err := <-done; exitCode(err) != 1 || !strings.Contains(err.Error(), "1 of 3 rows have no result yet") {
		t.Errorf("interrupted: %v", err)
	}
	text, _ := os.ReadFile(out)
	if got, want := statuses(string(text)), []string{"1 provisioned chat1", "2 failed ", "4 pending "}; !slices.Equal(got, want) {
		t.Errorf("after Ctrl-C the results say %q, want %q", got, want)
	}
	if !strings.Contains(stderr.String(), `"published_before":1`) {
		t.Errorf("the second run did not find c published:\n%s", stderr.String())
	}
	st, _ := js.Stream(ctx, "EVENTS")
	if info, _ := st.Info(ctx); info.State.Msgs != 3 {
		t.Errorf("%d events in the stream, want 3: published once each", info.State.Msgs)
	}
}

func TestBatchUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rows.csv")
	if err := os.WriteFile(file, []byte("name,owner,members\nn,u1,u2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // never reached
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "-f FILE is required"},
		{[]string{"-f", file, "extra"}, `unexpected argument "extra"`},
		{[]string{"-f", file, "-subject", "project.deleted"}, "-subject must be project.created, event.scheduled, project.updated or event.updated"},
		{[]string{"-f", filepath.Join(dir, "missing.csv")}, "no such file"},
		{[]string{"-f", file, "-o", file}, "would overwrite the input"},
		{[]string{"-f", file, "-wait", "-1s"}, "-wait must not be negative"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := run(t, append([]string{"batch"}, tt.args...)...)
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "provisioner: batch: ") {
				t.Errorf("%v (exit %d), want a usage error saying %q\n%s", err, exitCode(err), tt.want, out)
			}
		})
	}
}

// provisioner batch -subject project.updated takes the same columns: each
// row changes its project's group (an empty cell leaves that field as it
// is), and the results CSV says updated.
func TestBatchUpdates(t *testing.T) {
	t.Setenv("DINGTALK_QPS", "1000")
	p := startPipeline(t, sim.Config{})
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	batchRun := func(args ...string) (string, error) {
		var out natstest.LogBuffer
		err := (&Main{Stdout: &out, Stderr: &out}).Run(context.Background(), append([]string{"batch", "-wait", "30s"}, args...))
		return out.String(), err
	}
	created := write("create.csv", "id,name,owner,members,project_id\nc1,Apollo,u1,u2;u3,P1\nc2,Borealis,u1,u2,P2\n")
	if out, err := batchRun("-f", created); err != nil {
		t.Fatalf("creating: %v\n%s", err, out)
	}
	updates := write("update.csv", "id,name,owner,members,project_id,version\nu1,Apollo II,,u2;u4,P1,2\nu2,,u5,,P2,2\nu3,,,,P9,1\n")
	out, err := batchRun("-f", updates, "-subject", "project.updated")
	if exitCode(err) != 1 || !strings.Contains(out, "3 rows: 0 provisioned, 2 updated, 1 failed") {
		t.Fatalf("updating: %v\n%s", err, out)
	}
	recs := readResults(t, strings.TrimSuffix(updates, ".csv")+".results.csv")
	want := [][2]string{{"updated", "3"}, {"updated", "2"}, {"failed", ""}} // P1: u1 u2 u4; P2: u2 u5 (the old owner is not listed)
	for i, rec := range recs {
		if rec[2] != want[i][0] || rec[5] != want[i][1] {
			t.Errorf("row %d: %q, want status %s and %s members", i+2, rec, want[i][0], want[i][1])
		}
	}
	if _, err := run(t, "inspect", "project.updated", "u1"); err == nil || !strings.Contains(err.Error(), "an update worked in one delivery") {
		t.Errorf("inspect of an update worked in one delivery: %v, want where to look", err)
	}
	out, err = run(t, "inspect", "project", "P1")
	for _, want := range []string{"project:     P1 ", "group:       plain group, chatid chat", "managed:     3: u1 u2 u4", "version:     2", "closed:      no",
		"(its creation's step, kept in this record)", "outcome:     provisioned (result on group.provisioned)",
		`answered:    project.updated "u1"`} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("inspect project P1 (%v): want %q in\n%s", err, want, out)
		}
	}
	if _, err := run(t, "inspect", "project", "P9"); err == nil || !strings.Contains(err.Error(), `no record for project_id "P9"`) {
		t.Errorf("inspect project P9: %v, want no record", err)
	}
	if recs[2][7] != messages.ReasonNoGroup {
		t.Errorf("an update of a project without a group: %q, want reason %s", recs[2], messages.ReasonNoGroup)
	}
	for _, g := range p.sim.Groups() {
		switch g.Name {
		case "Apollo II":
			if g.Owner != "u1" || !slices.Equal(slices.Sorted(slices.Values(g.Members)), []string{"u1", "u2", "u4"}) {
				t.Errorf("P1 in DingTalk: %+v", g)
			}
		case "Borealis":
			if g.Owner != "u5" || !slices.Equal(slices.Sorted(slices.Values(g.Members)), []string{"u2", "u5"}) {
				t.Errorf("P2 in DingTalk: %+v", g)
			}
		default:
			t.Errorf("unexpected group %+v", g)
		}
	}
}
