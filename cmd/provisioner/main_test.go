package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"provisioner/internal/natstest"
)

// beCommandEnv makes this test binary run as the provisioner command
// itself, with the arguments it was given (see startCommand).
const beCommandEnv = "PROVISIONER_TEST_BE_COMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(beCommandEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

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
		{"QPS zero", "DINGTALK_QPS", "0", "DINGTALK_QPS must be at least 1"},
		{"concurrency", "CONCURRENCY", "-3", "CONCURRENCY must be between 1 and 10000"},
		{"ack wait", "ACK_WAIT", "soon", "ACK_WAIT: cannot read"},
		{"base URL", "DINGTALK_BASE_URL", "oapi.dingtalk.com", "DINGTALK_BASE_URL must be an absolute http(s) URL"},
		{"wildcard subject", "SUBJECT_PROJECT_CREATED", "project.*", "SUBJECT_PROJECT_CREATED must be a literal NATS subject"},
		{"log level", "LOG_LEVEL", "loud", "LOG_LEVEL must be one of"},
		{"retention", "RETENTION", "1m", "RETENTION must be at least 1h"},
		{"API family", "DINGTALK_API", "v2", "DINGTALK_API must be v1"},
		{"API base URL", "DINGTALK_API_BASE_URL", "api.dingtalk.com", "DINGTALK_API_BASE_URL must be an absolute http(s) URL"},
		{"replicas", "NATS_REPLICAS", "7", "NATS_REPLICAS must be 1 to 5"},
		{"CA file", "NATS_CA", "/nonexistent/ca.pem", "NATS_CA names a file that cannot be read: /nonexistent/ca.pem"},
		{"certificate without key", "NATS_CERT", "/nonexistent/cert.pem", "NATS_CERT and NATS_KEY go together"},
		{"user without password", "NATS_USER", "worker", "NATS_USER and NATS_PASSWORD go together"},
		{"credentials file", "NATS_CREDS", "/nonexistent/x.creds", "NATS_CREDS names a file that cannot be read"},
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

func TestSceneTemplateNeedsV1(t *testing.T) {
	validEnv(t)
	t.Setenv("DINGTALK_API", "legacy")
	t.Setenv("DINGTALK_SCENE_TEMPLATE_ID", "tpl-1")
	err := (&Main{Stdout: io.Discard, Stderr: io.Discard}).Run(context.Background(), []string{"run"})
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "DINGTALK_SCENE_TEMPLATE_ID needs DINGTALK_API=v1") {
		t.Fatalf("a scene template with the legacy API: %v", err)
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
	tests := []struct {
		args        []string
		family, api string // what the demo says it uses, and a call it must have made
		code        string // DingTalk's answer for the unknown member
	}{
		{nil, "DingTalk API: v1 (", "v1.0/im/group/create", "[DingTalk member.notFound]"},
		{[]string{"-api", "legacy"}, "DingTalk API: legacy", " chat/create", "[DingTalk 33012]"},
		{[]string{"-scene"}, "DingTalk API: v1 scene groups", "v1.0/im/sceneGroup/create", "[DingTalk member.notFound]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"demo"}, tt.args...), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), append([]string{"demo", "-timeout", "60s"}, tt.args...))
			if err != nil {
				t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			out := stdout.String()
			if n := strings.Count(out, "join https://qr.dingtalk.com/"); n != 5 {
				t.Errorf("%d invite links printed, want 5:\n%s", n, out)
			}
			for _, want := range []string{"5 provisioned, 1 failed", "ghost", tt.family, tt.api, tt.code} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
	var out bytes.Buffer
	if err := (&Main{Stdout: &out, Stderr: &out}).Run(context.Background(), []string{"demo", "-api", "legacy", "-scene"}); exitCode(err) != 2 {
		t.Errorf("demo -api legacy -scene: %v, want a usage error", err)
	}
}

func TestRunWorksEventsUntilCancelled(t *testing.T) {
	ns := natstest.Server(t)
	simFor(t, ns.ClientURL(), "very-secret-value")
	r := startRun(t)

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
	publishWhenReady(t, js, "project.created", []byte(`{"id":"run-1","project_id":"P","name":"Run test","owner":"u1","members":["u2"]}`))
	if _, err := sub.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("no result: %v\n%s", err, r.stderr.String())
	}
	checkReadiness(t, r.stderr.String())
	r.stop(t)
	logs := r.stderr.String()
	for _, want := range []string{`"message":"group provisioned"`, `"event_id":"run-1"`, `"message":"worker stopped"`, `serving /healthz`, `"dingtalk_api":"v1 (`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "very-secret-value") {
		t.Error("the app secret is in the logs")
	}
}

// checkReadiness finds the health server in a worker's log and checks that
// /readyz reports a pause, with its reason, and readiness again after resume.
func checkReadiness(t *testing.T, logs string) {
	t.Helper()
	var addr string
	for _, line := range strings.Split(logs, "\n") {
		var l struct{ Message, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Message, "serving /healthz") {
			addr = l.Addr
		}
	}
	if addr == "" {
		t.Fatalf("no health server in the log:\n%s", logs)
	}
	ready := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("/readyz before a pause: %d %s", code, body)
	}
	if out, err := run(t, "budget"); err != nil || !strings.Contains(out, "per-second budget: 20 calls/s per API (DINGTALK_QPS), shared by 1 worker(s)") {
		t.Errorf("budget beside a running worker: %v\n%s", err, out)
	}
	if out, err := run(t, "pause", "-until", "1h"); err != nil {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	if code, body := ready(); code != http.StatusServiceUnavailable || !strings.Contains(body, "paused: operator until ") {
		t.Errorf("/readyz while paused: %d %q, want 503 saying why and until when", code, body)
	}
	if out, err := run(t, "resume"); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if code, body := ready(); code != http.StatusOK {
		t.Errorf("/readyz after resume: %d %s", code, body)
	}
}
