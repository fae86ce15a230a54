package deadletter_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/deadletter"
	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/worker"
)

// setup runs a worker against the simulator (which does not know "ghost")
// and returns what the test needs: the simulator, JetStream, and a count of
// results per subject and event id.
func setup(t *testing.T) (*sim.Server, jetstream.JetStream, func(subject, id string) int) {
	t.Helper()
	s := sim.New(sim.Config{UnknownUsers: []string{"ghost"}})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	ns := natstest.Server(t)
	nc := natstest.Connect(t, ns)
	js, _ := jetstream.New(nc)
	client, err := dingtalk.NewClient(dingtalk.Options{BaseURL: srv.URL, APIBaseURL: srv.URL, AppKey: "k", AppSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(context.Background(), js, dingtalk.NewChatGroups(client), zerolog.Nop(), worker.Config{InitialBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	var mu sync.Mutex
	seen := map[string]int{}
	if _, err := nc.Subscribe("group.*", func(m *nats.Msg) {
		var r struct {
			SourceID string `json:"source_id"`
		}
		_ = json.Unmarshal(m.Data, &r)
		mu.Lock()
		seen[m.Subject+" "+r.SourceID]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return s, js, func(subject, id string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[subject+" "+id]
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, what, cond, nil)
}

// A replay interrupted at any step is finished by running it again, and
// nothing it repeats makes a second group or a second result.
func TestReplayInterruptedIsFinishedByRunningItAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		// interrupt does what a replay had done when it died, on letter l.
		interrupt func(t *testing.T, l *deadletter.Letters, recs *worker.Records, letter deadletter.Letter)
	}{
		{"after forgetting the failure", func(t *testing.T, _ *deadletter.Letters, recs *worker.Records, letter deadletter.Letter) {
			if err := recs.ForgetFailure(context.Background(), letter.SourceSubject, letter.EventID, letter.Seq, 1); err != nil {
				t.Fatal(err)
			}
		}},
		{"after publishing, before removing the letter", func(t *testing.T, l *deadletter.Letters, _ *worker.Records, letter deadletter.Letter) {
			if _, err := l.Replay(context.Background(), []deadletter.Letter{letter}, deadletter.ReplayOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, js, results := setup(t)
			ctx := context.Background()
			if _, err := js.Publish(ctx, "project.created", []byte(`{"id":"e1","project_id":"P","name":"Replayed","owner":"u1","members":["ghost"]}`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the failure", func() bool { return results("group.failed", "e1") == 1 })
			recs, err := worker.OpenRecords(ctx, js, worker.Config{})
			if err != nil {
				t.Fatal(err)
			}
			// The failure is published, then recorded: wait for the record too.
			waitFor(t, "the failure recorded", func() bool {
				c, err := recs.CheckReplay(ctx, "project.created", "e1")
				return err == nil && c.State == deadletter.ReplayFailed
			})
			l, err := deadletter.Open(ctx, js, deadletter.Options{Records: recs})
			if err != nil {
				t.Fatal(err)
			}
			list, err := l.List(ctx, deadletter.Filter{Reason: "dingtalk_rejected"})
			if err != nil || len(list) != 1 || list[0].EventID != "e1" {
				t.Fatalf("letters: %+v, %v", list, err)
			}
			s.AddUsers("ghost")
			tc.interrupt(t, l, recs, list[0])

			// The run again sees the letter as it was listed before the interruption.
			if _, err := l.Replay(ctx, list, deadletter.ReplayOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the group", func() bool { return results("group.provisioned", "e1") == 1 })
			if _, err := l.Replay(ctx, list, deadletter.ReplayOptions{}); err != nil { // and once more, for good measure
				t.Fatal(err)
			}
			if left, _ := l.List(ctx, deadletter.Filter{}); len(left) != 0 {
				t.Errorf("letters left: %+v", left)
			}
			// Redeliveries of the event settle before the check: drain the consumer.
			waitFor(t, "the consumer to settle", func() bool {
				c, err := js.Consumer(ctx, "PROVISIONER_EVENTS", "provisioner")
				if err != nil {
					return false
				}
				info, err := c.Info(ctx)
				return err == nil && info.NumPending == 0 && info.NumAckPending == 0
			})
			groups := 0
			for _, g := range s.Groups() {
				if g.Name == "Replayed" {
					groups++
				}
			}
			if groups != 1 || results("group.failed", "e1") != 1 {
				t.Errorf("%d groups, %d failures: want one group and the first failure only", groups, results("group.failed", "e1"))
			}
		})
	}
}
