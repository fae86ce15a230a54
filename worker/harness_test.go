package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/messages"
	"provisioner/worker"
)

// mode is one way of making groups, and the simulator's names for its calls.
type mode struct {
	name                              string
	family                            dingtalk.Family
	scene                             bool
	create, add, link, read, tokenAPI string
}

var (
	legacyMode = mode{"legacy", dingtalk.Legacy, false, "chat/create", "chat/update", "topapi/chat/qrcode/get", "chat/get", "gettoken"}
	v1Mode     = mode{"v1", dingtalk.V1, false, "v1.0/im/group/create", "v1.0/im/group/update", "topapi/chat/qrcode/get", "chat/get", "v1.0/oauth2/accessToken"}
	sceneMode  = mode{"scene", dingtalk.V1, true, "v1.0/im/sceneGroup/create", "v1.0/im/sceneGroup/member/add", "v1.0/im/sceneGroups/query",
		"v1.0/im/sceneGroups/members/batchQuery", "v1.0/oauth2/accessToken"}
	allModes = []mode{legacyMode, v1Mode, sceneMode}
)

const testTemplate = "tpl-provisioner"

// env is one test's world: an embedded JetStream server, a DingTalk
// simulator, a client for it, and the groups the worker makes with it.
type env struct {
	t      testing.TB
	mode   mode
	ns     *server.Server
	js     jetstream.JetStream
	sim    *sim.Server
	client *dingtalk.Client
	groups dingtalk.Groups
	simURL string
	logs   *natstest.LogBuffer
}

// newEnv is a world in the default mode, v1.
func newEnv(t testing.TB, simCfg sim.Config) *env {
	t.Helper()
	return newModeEnv(t, simCfg, v1Mode)
}

func newModeEnv(t testing.TB, simCfg sim.Config, m mode) *env {
	t.Helper()
	return newEnvOn(t, natstest.Server(t), simCfg, m)
}

// newEnvOn is a world on a server the test started (on a fixture's store, say).
func newEnvOn(t testing.TB, ns *server.Server, simCfg sim.Config, m mode) *env {
	t.Helper()
	e := &env{t: t, mode: m, ns: ns, logs: &natstest.LogBuffer{}}
	e.js = e.connect()

	simCfg.AppKey, simCfg.AppSecret = "key", "secret"
	simCfg.SceneTemplates = append(simCfg.SceneTemplates, testTemplate)
	e.sim = sim.New(simCfg)
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	e.simURL = srv.URL
	e.client, e.groups = e.newGroups(0)
	return e
}

// newGroups makes a client of the env's mode capped at qps (0: no cap) and its groups.
func (e *env) newGroups(qps float64) (*dingtalk.Client, dingtalk.Groups) {
	e.t.Helper()
	return e.groupsFor("secret", qps)
}

// newGroupsWith makes a client of the env's mode with another app secret.
func (e *env) newGroupsWith(secret string) (*dingtalk.Client, dingtalk.Groups) {
	e.t.Helper()
	return e.groupsFor(secret, 0)
}

func (e *env) groupsFor(secret string, qps float64) (*dingtalk.Client, dingtalk.Groups) {
	e.t.Helper()
	c, err := dingtalk.NewClient(dingtalk.Options{Family: e.mode.family, BaseURL: e.simURL, APIBaseURL: e.simURL, AppKey: "key", AppSecret: secret, QPS: qps})
	if err != nil {
		e.t.Fatal(err)
	}
	if !e.mode.scene {
		return c, dingtalk.NewChatGroups(c)
	}
	g, err := dingtalk.NewSceneGroups(c, testTemplate)
	if err != nil {
		e.t.Fatal(err)
	}
	return c, g
}

// connect opens a new connection, closed when the test ends.
func (e *env) connect() jetstream.JetStream {
	e.t.Helper()
	js, err := jetstream.New(natstest.Connect(e.t, e.ns))
	if err != nil {
		e.t.Fatal(err)
	}
	return js
}

// running is a worker started by start.
type running struct {
	w      *worker.Worker
	js     jetstream.JetStream
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
	err    error         // what Run returned; read after done
}

// stop asks the worker to stop and waits for Run to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("Run: %v", r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("worker did not stop")
	}
}

func testConfig() worker.Config {
	return worker.Config{
		Concurrency: 16, AckWait: 5 * time.Second, ShutdownGrace: 5 * time.Second,
		InitialBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
}

// start runs a worker on its own connection with groups (nil: the env's).
func (e *env) start(cfg worker.Config, groups dingtalk.Groups) *running {
	e.t.Helper()
	if groups == nil {
		groups = e.groups
	}
	js := e.connect()
	log := zerolog.New(e.logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	w, err := worker.New(context.Background(), js, groups, log, cfg)
	if err != nil {
		e.t.Fatalf("worker.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, js: js, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = w.Run(ctx); close(r.done) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	return r
}

// publish sends an event; the stream must exist (a worker was created).
func (e *env) publish(subject string, body any) {
	e.t.Helper()
	data, ok := body.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(body); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.js.Publish(context.Background(), subject, data); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

func project(id string, members ...string) map[string]any {
	return map[string]any{"id": id, "project_id": "P-" + id, "name": "Project " + id, "owner": "owner-" + id, "members": members}
}

// step reads an event's step: inside its project's record (projectID) when
// it created the project's group as the project's first event, else its own
// step record.
func (e *env) step(subject, id, projectID string) ([]byte, bool) {
	e.t.Helper()
	ctx := context.Background()
	key := messages.Key(subject, id)
	if kv, err := e.js.KeyValue(ctx, "provisioner_projects"); err == nil {
		pkey := messages.ProjectKey(&messages.Event{Kind: messages.ProjectCreated, RefID: projectID})
		if entry, err := kv.Get(ctx, pkey); err == nil {
			var rec struct {
				Creator string          `json:"creator"`
				Step    json.RawMessage `json:"step"`
			}
			if json.Unmarshal(entry.Value(), &rec) == nil && rec.Creator == key && rec.Step != nil {
				return rec.Step, true
			}
		}
	}
	kv, err := e.js.KeyValue(ctx, "provisioner_state")
	if err != nil {
		return nil, false
	}
	entry, err := kv.Get(ctx, key)
	if err != nil {
		return nil, false
	}
	return entry.Value(), true
}

// result is either result type, as read from the results stream.
type result struct {
	Subject string
	Header  nats.Header
	Raw     []byte
	messages.Provisioned
	Error *messages.Failure `json:"error"`
}

// results reads everything on the result subjects, from the start.
func (e *env) results(want int) []result {
	e.t.Helper()
	return e.readStream("PROVISIONER_RESULTS", want)
}

func (e *env) readStream(stream string, want int) []result {
	e.t.Helper()
	return e.readStreamWithin(stream, want, 60*time.Second)
}

// readStreamWithin waits (up to within) until stream holds want messages,
// then reads them all.
func (e *env) readStreamWithin(stream string, want int, within time.Duration) []result {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		e.t.Fatalf("stream %s: %v", stream, err)
	}
	stored := 0
	natstest.Eventually(e.t, within, fmt.Sprintf("%d messages in %s", want, stream), func() bool {
		info, err := s.Info(ctx)
		if err != nil {
			e.t.Fatalf("stream %s: %v", stream, err)
		}
		stored = int(info.State.Msgs)
		return stored >= want
	}, func() string { return fmt.Sprintf("%d there; last log lines:\n%s", stored, e.logs.Tail(20)) })
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatalf("ordered consumer on %s: %v", stream, err)
	}
	batch, err := cons.FetchNoWait(1 << 20)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []result
	for m := range batch.Messages() {
		r := result{Subject: m.Subject(), Header: m.Headers(), Raw: m.Data()}
		if json.Valid(m.Data()) { // dead letters hold whatever was sent
			_ = json.Unmarshal(m.Data(), &r)
		}
		out = append(out, r)
	}
	return out
}

// waitFor polls cond until it holds or 60 s pass.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	natstest.Eventually(e.t, 60*time.Second, what, cond, func() string { return "last log lines:\n" + e.logs.Tail(20) })
}

// pending is how many messages the consumer has not settled.
func (e *env) pending() int {
	e.t.Helper()
	c, err := e.js.Consumer(context.Background(), "PROVISIONER_EVENTS", "provisioner")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return int(info.NumPending) + info.NumAckPending
}

func members(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// stored is how many messages a stream holds.
func (e *env) stored(stream string) int {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		e.t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatalf("stream %s: %v", stream, err)
	}
	return int(info.State.Msgs)
}

func countLines(lines []string, part string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, part) {
			n++
		}
	}
	return n
}
