package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/natstest"
)

// A worker on a producer's stream that captures only the creation subjects
// starts, stays ready, and says which subjects no stream captures and the
// command that adds them: in /readyz's body and as a gauge per subject.
func TestReadinessNamesUncapturedSubjects(t *testing.T) {
	ns := natstest.Server(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "HR_EVENTS", Subjects: []string{"project.created", "event.scheduled"}}); err != nil {
		t.Fatal(err)
	}
	simFor(t, ns.ClientURL(), "very-secret-value")
	r := startRun(t)
	publishWhenReady(t, js, "project.created", []byte(`{"id":"hr-1","project_id":"P1","name":"HR","owner":"u1","members":["u2"]}`))
	addr := healthAddr(t, &r.stderr)
	code, body := get(t, "http://"+addr+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "not captured by any stream") ||
		!strings.Contains(body, "event.cancelled, event.updated, project.closed, project.updated") ||
		!strings.Contains(body, `nats stream edit HR_EVENTS --subjects "project.created,event.scheduled,event.cancelled,event.updated,project.closed,project.updated"`) {
		t.Errorf("/readyz answered %d %q, want 200 naming the uncaptured subjects and the command", code, body)
	}
	_, metrics := get(t, "http://"+addr+"/metrics")
	for _, subj := range []string{"project.updated", "event.cancelled"} {
		if want := `provisioner_uncaptured_subjects{subject="` + subj + `"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(r.stderr.String(), "does not capture these input subjects"); n != 1 {
		t.Errorf("the uncaptured subjects were logged %d times, want once", n)
	}
	r.stop(t)
}
