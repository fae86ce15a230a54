package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/dingtalk/sim"
)

// validEnv sets a complete configuration; tests then break one variable.
func validEnv(t *testing.T) {
	t.Helper()
	t.Setenv("DINGTALK_APP_KEY", "key")
	t.Setenv("DINGTALK_APP_SECRET", "very-secret-value")
	t.Setenv("LOG_LEVEL", "info")
}

func TestConfigurationErrors(t *testing.T) {
	tests := []struct {
		name, key, value, want string
	}{
		{"missing key", "DINGTALK_APP_KEY", "", "DINGTALK_APP_KEY is required"},
		{"missing secret", "DINGTALK_APP_SECRET", "", "DINGTALK_APP_SECRET is required"},
		{"QPS not a number", "DINGTALK_QPS", "fast", `DINGTALK_QPS: cannot read "fast" as a number`},
		{"QPS zero", "DINGTALK_QPS", "0", "DINGTALK_QPS must be more than 0"},
		{"concurrency", "CONCURRENCY", "-3", "CONCURRENCY must be between 1 and 10000"},
		{"ack wait", "ACK_WAIT", "soon", "ACK_WAIT: cannot read"},
		{"base URL", "DINGTALK_BASE_URL", "oapi.dingtalk.com", "DINGTALK_BASE_URL must be an absolute http(s) URL"},
		{"wildcard subject", "SUBJECT_PROJECT_CREATED", "project.*", "SUBJECT_PROJECT_CREATED must be a literal NATS subject"},
		{"log level", "LOG_LEVEL", "loud", "LOG_LEVEL must be one of"},
		{"retention", "RETENTION", "1m", "RETENTION must be at least 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			validEnv(t)
			t.Setenv(tt.key, tt.value)
			var stdout, stderr bytes.Buffer
			err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), []string{"run"})
			if err == nil {
				t.Fatal("run accepted a bad configuration")
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "provisioner: ") {
				t.Fatalf("error %q: want one line containing %q", msg, tt.want)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
			if strings.Contains(err.Error()+stderr.String(), "very-secret-value") {
				t.Error("the app secret was printed")
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &out}
	if err := m.Run(context.Background(), []string{"frobnicate"}); err == nil || exitCode(err) != 2 {
		t.Fatalf("unknown command: %v", err)
	}
	if err := m.Run(context.Background(), []string{"help"}); err != nil || !strings.Contains(out.String(), "demo") {
		t.Fatalf("help: %v\n%s", err, out.String())
	}
	if err := m.Run(context.Background(), []string{"sim", "-busy", "2"}); err == nil || !strings.Contains(err.Error(), "-busy") {
		t.Fatalf("sim -busy 2: %v", err)
	}
}

func TestDemoPrintsInviteLinks(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), []string{"demo", "-timeout", "60s"})
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if n := strings.Count(out, "join https://qr.dingtalk.com/"); n != 5 {
		t.Errorf("%d invite links printed, want 5:\n%s", n, out)
	}
	if !strings.Contains(out, "5 provisioned, 1 failed") || !strings.Contains(out, "ghost") {
		t.Errorf("summary missing:\n%s", out)
	}
}

func TestRunWorksEventsUntilCancelled(t *testing.T) {
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	simServer := sim.New(sim.Config{AppKey: "key", AppSecret: "very-secret-value"})
	srv := httptest.NewServer(simServer)
	t.Cleanup(srv.Close)

	validEnv(t)
	t.Setenv("NATS_URL", ns.ClientURL())
	t.Setenv("DINGTALK_BASE_URL", srv.URL)
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")
	var stdout, stderr syncWriter
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Main{Stdout: &stdout, Stderr: &stderr}).Run(ctx, []string{"run"}) }()

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("group.provisioned")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	body := []byte(`{"id":"run-1","project_id":"P","name":"Run test","owner":"u1","members":["u2"]}`)
	deadline := time.Now().Add(30 * time.Second)
	for { // the worker creates the stream when it starts
		if _, err := js.Publish(ctx, "project.created", body); err == nil {
			break
		} else if !errors.Is(err, jetstream.ErrNoStreamResponse) || time.Now().After(deadline) {
			t.Fatalf("publish: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := sub.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no result: %v\n%s", err, stderr.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	logs := stderr.String()
	for _, want := range []string{`"message":"group provisioned"`, `"event_id":"run-1"`, `"message":"worker stopped"`, `serving /healthz`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "very-secret-value") {
		t.Error("the app secret is in the logs")
	}
}
