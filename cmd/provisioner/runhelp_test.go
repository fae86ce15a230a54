package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"provisioner/internal/natstest"

	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk/sim"
)

// simFor starts a DingTalk simulator that takes secret and points the
// worker's environment at it and at natsURL (the worker's own secret is
// validEnv's, unless the test sets another).
func simFor(t *testing.T, natsURL, secret string) *sim.Server {
	t.Helper()
	s := sim.New(sim.Config{AppKey: "key", AppSecret: secret})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	validEnv(t)
	t.Setenv("NATS_URL", natsURL)
	t.Setenv("DINGTALK_BASE_URL", srv.URL)
	t.Setenv("DINGTALK_API_BASE_URL", srv.URL)
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")
	return s
}

// runningCmd is `provisioner run` working in the background.
type runningCmd struct {
	stdout, stderr natstest.LogBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startRun starts `provisioner run` with the environment as the test set it.
func startRun(t *testing.T) *runningCmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningCmd{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- (&Main{Stdout: &r.stdout, Stderr: &r.stderr}).Run(ctx, []string{"run"}) }()
	t.Cleanup(cancel)
	return r
}

// stop stops it as SIGTERM would and checks that it stopped cleanly.
func (r *runningCmd) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("run: %v\n%s", err, r.stderr.String())
	}
}

// publishWhenReady publishes body once the worker has created the stream
// that takes subject (within 30 s).
func publishWhenReady(t *testing.T, js jetstream.JetStream, subject string, body []byte) {
	t.Helper()
	var err error
	natstest.Eventually(t, 30*time.Second, "publishing on "+subject, func() bool {
		_, err = js.Publish(context.Background(), subject, body) // the worker creates the stream when it starts
		return err == nil
	}, func() string { return fmt.Sprint(err) })
}
