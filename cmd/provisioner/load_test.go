package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/natstest"
)

// A stand-in worker answers every event, some twice (as after a
// redelivery), some failed and some flagged; load counts each event once.
func TestLoadCountsEachEventOnce(t *testing.T) {
	ns := natstest.Server(t)
	nc := natstest.Connect(t, ns)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"project.created"}}); err != nil {
		t.Fatal(err)
	}
	// Results of another run must not count.
	stray, _ := json.Marshal(map[string]any{"source_id": "other-0", "possible_duplicate": true})
	answered := 0
	_, err := nc.Subscribe("project.created", func(m *nats.Msg) {
		var ev struct{ ID string }
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Error(err)
			return
		}
		subject := "group.provisioned"
		if answered%4 == 1 {
			subject = "group.failed"
		}
		res, _ := json.Marshal(map[string]any{"source_id": ev.ID, "possible_duplicate": answered%3 == 0})
		for range 1 + answered%2 {
			_ = nc.Publish(subject, res)
		}
		_ = nc.Publish("group.provisioned", stray)
		answered++
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server knows the subscription before load publishes
		t.Fatal(err)
	}
	t.Setenv("NATS_URL", ns.ClientURL())
	var stdout, stderr natstest.LogBuffer
	if err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), []string{"load", "-n", "30", "-id-prefix", "t", "-timeout", "30s"}); err != nil {
		t.Fatalf("load: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	// 30 events: 8 failed (1, 5, 9, …), 10 flagged (0, 3, 6, …).
	if want := "30 results (8 failed, 10 flagged possible_duplicate) in "; !strings.Contains(out, want) {
		t.Fatalf("load printed:\n%s\nwant a line with %q", out, want)
	}
}
