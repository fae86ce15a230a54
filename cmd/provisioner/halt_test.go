package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/natstest"
)

// A worker started with a wrong app secret against a backlog fails no event
// and is not ready, saying credentials; restarted with the right secret,
// every event is provisioned.
func TestWrongSecretFailsNoEvent(t *testing.T) {
	const n = 5
	ns := natstest.Server(t)
	simServer := simFor(t, ns.ClientURL(), "the-right-secret") // the worker's is validEnv's
	r := startRun(t)

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for i := range n {
		body := fmt.Sprintf(`{"id":"ws-%d","project_id":"P%d","name":"Wrong secret %d","owner":"u1","members":["u2"]}`, i, i, i)
		publishWhenReady(t, js, "project.created", []byte(body))
	}
	addr := healthAddr(t, &r.stderr)
	var body string
	var code int
	natstest.Eventually(t, 30*time.Second, "/readyz to answer 503 misconfigured: credentials", func() bool { // not ready, saying why
		code, body = get(t, "http://"+addr+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "misconfigured: credentials")
	}, func() string { return fmt.Sprintf("it answered %d %q\n%s", code, body, r.stderr.String()) })
	if !strings.Contains(body, "invalidClientIdOrSecret") {
		t.Errorf("/readyz does not say what DingTalk answered: %q", body)
	}
	if _, metrics := get(t, "http://"+addr+"/metrics"); !strings.Contains(metrics, `provisioner_misconfigured{reason="credentials"} 1`) {
		t.Error("/metrics does not show provisioner_misconfigured{reason=\"credentials\"} 1")
	}
	r.stop(t)
	for _, stream := range []string{"PROVISIONER_RESULTS", "PROVISIONER_DEAD_LETTERS"} {
		if got := streamMsgs(t, js, stream); got != 0 {
			t.Errorf("%s holds %d messages after the refused secret, want 0", stream, got)
		}
	}

	// Restarted with the right secret: every event provisioned.
	t.Setenv("DINGTALK_APP_SECRET", "the-right-secret")
	r2 := startRun(t)
	natstest.Eventually(t, time.Minute, fmt.Sprintf("%d results after the restart", n), func() bool {
		return streamMsgs(t, js, "PROVISIONER_RESULTS") >= n
	}, r2.stderr.String)
	r2.stop(t)
	if got := len(simServer.Groups()); got != n {
		t.Errorf("%d groups, want %d", got, n)
	}
	if strings.Contains(r.stderr.String()+r2.stderr.String(), "the-right-secret") {
		t.Error("the app secret is in the logs")
	}
}

func healthAddr(t *testing.T, logs *natstest.LogBuffer) string {
	t.Helper()
	var addr string
	natstest.Eventually(t, 30*time.Second, "the health server in the log", func() bool {
		for _, line := range logs.Lines() {
			var l struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Message, "serving /healthz") {
				addr = l.Addr
				return true
			}
		}
		return false
	}, logs.String)
	return addr
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) int {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return int(info.State.Msgs)
}
