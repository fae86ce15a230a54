package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/natstest"
)

// run runs one command in-process and returns what it printed.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr natstest.LogBuffer
	err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), args)
	return stdout.String() + stderr.String(), err
}

func TestPauseBudgetResume(t *testing.T) {
	ns := natstest.Server(t)
	js, _ := jetstream.New(natstest.Connect(t, ns))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"project.created"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Durable: "provisioner", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATS_URL", ns.ClientURL())
	t.Setenv("DINGTALK_MONTHLY_QUOTA", "5000")
	paused := func() bool {
		t.Helper()
		c, err := js.Consumer(ctx, "EVENTS", "provisioner")
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Paused
	}

	steps := []struct {
		args       []string
		want       string
		wantPaused bool
	}{
		{[]string{"budget"}, "0 DingTalk calls of DINGTALK_MONTHLY_QUOTA=5000 (0%)\nwork: running", false},
		{[]string{"pause", "-until", "90m", "-why", "moving the app to a bigger plan"}, "work paused until ", true},
		{[]string{"budget"}, "work: PAUSED (operator) since ", true},
		{[]string{"budget"}, ": moving the app to a bigger plan", true},
		{[]string{"resume"}, "work resumed", false},
		{[]string{"budget"}, "work: running", false},
		{[]string{"pause"}, "work paused until provisioner resume", true},
		{[]string{"budget"}, "until provisioner resume", true},
	}
	for _, s := range steps {
		out, err := run(t, s.args...)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("%v: %v\n%s\nwant %q", s.args, err, out, s.want)
		}
		if paused() != s.wantPaused {
			t.Fatalf("after %v the consumer is paused: %v, want %v", s.args, !s.wantPaused, s.wantPaused)
		}
	}
	out, err := run(t, "budget", "-json")
	var st struct {
		Paused *struct{ Reason string }
	}
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Paused == nil || st.Paused.Reason != "operator" {
		t.Fatalf("budget -json: %v\n%s", err, out)
	}
}

func TestPauseRefusesBadInput(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // never reached: the input is checked first
	tests := []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"pause", "-until", "yesterday"}, "", "-until must be a duration (90m) or an RFC 3339 time"},
		{[]string{"pause", "-until", "-5m"}, "", "-until -5m is not in the future"},
		{[]string{"budget"}, "-1", "DINGTALK_MONTHLY_QUOTA must be 0"},
		{[]string{"budget"}, "many", `DINGTALK_MONTHLY_QUOTA: cannot read "many" as a whole number`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " ")+tt.env, func(t *testing.T) {
			t.Setenv("DINGTALK_MONTHLY_QUOTA", tt.env)
			_, err := run(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || exitCode(err) != 2 {
				t.Fatalf("err = %v (exit %d), want one line with %q and exit 2", err, exitCode(err), tt.want)
			}
		})
	}
}
