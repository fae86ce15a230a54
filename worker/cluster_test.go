package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
	"provisioner/worker"
)

// clusterEnv is a three-node NATS cluster and a DingTalk simulator.
type clusterEnv struct {
	t      *testing.T
	c      *natstest.Cluster
	js     jetstream.JetStream // the test's own connection, to every node
	sim    *sim.Server
	groups dingtalk.Groups
	logs   *natstest.LogBuffer
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	c := natstest.NewCluster(t)
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Config{AppKey: "key", AppSecret: "secret"})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	client, err := dingtalk.NewClient(dingtalk.Options{BaseURL: srv.URL, APIBaseURL: srv.URL, AppKey: "key", AppSecret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	return &clusterEnv{t: t, c: c, js: js, sim: s, groups: dingtalk.NewChatGroups(client), logs: &natstest.LogBuffer{}}
}

// newWorker creates a worker on a connection of its own to every node.
func (ce *clusterEnv) newWorker(ctx context.Context, cfg worker.Config) (*worker.Worker, error) {
	js, err := jetstream.New(ce.c.Connect(ce.t))
	if err != nil {
		return nil, err
	}
	log := zerolog.New(ce.logs).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	return worker.New(ctx, js, ce.groups, log, cfg)
}

func (ce *clusterEnv) run(w *worker.Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	ce.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
}

// replicas is how many copies JetStream keeps of a stream.
func (ce *clusterEnv) replicas(stream string) int {
	ce.t.Helper()
	var err error
	for range 20 { // a request can go unanswered while a group elects its leader
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var s jetstream.Stream
		s, err = ce.js.Stream(ctx, stream)
		cancel()
		if err == nil {
			return s.CachedInfo().Config.Replicas
		}
		ce.t.Logf("stream %s: %v", stream, err)
	}
	ce.t.Fatalf("stream %s: %v", stream, err)
	return 0
}

// leader names the node leading a stream's group.
func (ce *clusterEnv) leader(stream string) int {
	ce.t.Helper()
	s, err := ce.js.Stream(context.Background(), stream)
	if err != nil {
		ce.t.Fatalf("stream %s: %v", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || ce.c.Index(info.Cluster.Leader) < 0 {
		ce.t.Fatalf("stream %s has no live leader: %+v", stream, info.Cluster)
	}
	return ce.c.Index(info.Cluster.Leader)
}

func (ce *clusterEnv) stored(stream string) int {
	ce.t.Helper()
	s, err := ce.js.Stream(context.Background(), stream)
	if err != nil {
		return -1 // no leader for a moment
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

func (ce *clusterEnv) waitFor(what string, within time.Duration, cond func() bool) {
	ce.t.Helper()
	natstest.Eventually(ce.t, within, what, cond, func() string { return "last log lines:\n" + ce.logs.Tail(20) })
}

// Three workers starting at the same moment on a cluster, with three
// replicas, all come up, and every stream and bucket they create has three.
// (Two connections creating the same R3 assets at once once left a bucket
// request unanswered, and a worker gave up after 30 s.)
func TestWorkersStartTogetherOnACluster(t *testing.T) {
	ce := newClusterEnv(t)
	cfg := testConfig()
	cfg.Replicas, cfg.QPS = 3, 20
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	workers := make([]*worker.Worker, 3)
	for i := range workers {
		wg.Go(func() { workers[i], errs[i] = ce.newWorker(ctx, cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	for _, w := range workers {
		ce.run(w) // the pace bucket is created by Run
	}
	ce.waitFor("the pace bucket", 30*time.Second, func() bool {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := ce.js.Stream(rctx, "KV_provisioner_budget_pace")
		return err == nil
	})
	for _, s := range []string{"PROVISIONER_EVENTS", "PROVISIONER_RESULTS", "PROVISIONER_DEAD_LETTERS",
		"KV_provisioner_state", "KV_provisioner_budget", "KV_provisioner_budget_pace"} {
		if got := ce.replicas(s); got != 3 {
			t.Errorf("%s has %d replicas, want 3", s, got)
		}
	}
}

// A worker started with more replicas than an existing stream or bucket has
// raises it, and one started with fewer never lowers it.
func TestReplicasAreRaisedNeverLowered(t *testing.T) {
	ce := newClusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, step := range []struct{ ask, want int }{{1, 1}, {3, 3}, {1, 3}} {
		cfg := testConfig()
		cfg.Replicas = step.ask
		if _, err := ce.newWorker(ctx, cfg); err != nil {
			t.Fatalf("replicas %d: %v", step.ask, err)
		}
		for _, s := range []string{"PROVISIONER_EVENTS", "KV_provisioner_state", "KV_provisioner_budget"} {
			if got := ce.replicas(s); got != step.want {
				t.Errorf("after a worker asking %d: %s has %d replicas, want %d", step.ask, s, got, step.want)
			}
		}
	}
	if countLines(ce.logs.Lines(), `"stream":"PROVISIONER_EVENTS","from":1,"to":3`) == 0 {
		t.Errorf("no log line says the events stream was raised from 1 to 3:\n%s", ce.logs.Tail(20))
	}
}

// A node lost mid-batch loses nothing when everything has three replicas:
// every event gets exactly one result, no group is made twice, and results
// resume within seconds. The node stopped is the one leading the events
// stream, or the one leading the project records (which hold a creation's
// step when it is its project's first event).
func TestNodeLossMidBatch(t *testing.T) {
	natstest.Long(t)
	for _, lose := range []string{"PROVISIONER_EVENTS", "KV_provisioner_projects"} {
		t.Run(lose, func(t *testing.T) {
			const n = 600
			ce := newClusterEnv(t)
			cfg := testConfig()
			cfg.Replicas, cfg.Concurrency, cfg.QPS = 3, 32, 1_000_000
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for range 2 {
				w, err := ce.newWorker(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				ce.run(w)
			}
			for i := range n {
				data, _ := json.Marshal(project(fmt.Sprintf("c%d", i), "m1", "m2"))
				if _, err := ce.js.PublishAsync("project.created", data); err != nil {
					t.Fatal(err)
				}
			}
			<-ce.js.PublishAsyncComplete()
			ce.waitFor("a quarter of the results", 60*time.Second, func() bool { return ce.stored("PROVISIONER_RESULTS") >= n/4 })
			victim := ce.leader(lose)
			stoppedAt := time.Now()
			before := ce.stored("PROVISIONER_RESULTS")
			ce.c.Stop(victim)
			t.Logf("stopped node %d, the leader of %s, at %d results", victim+1, lose, before)
			var resumed time.Duration
			ce.waitFor("a result after the loss", 30*time.Second, func() bool {
				if ce.stored("PROVISIONER_RESULTS") > before {
					resumed = time.Since(stoppedAt)
					return true
				}
				return false
			})
			ce.waitFor("every result", 90*time.Second, func() bool { return ce.stored("PROVISIONER_RESULTS") >= n })
			t.Logf("results resumed %v after the loss", resumed)
			if resumed > 10*time.Second {
				t.Errorf("results resumed %v after the node was lost, want within 10s", resumed)
			}
			checkOneResultEach(t, ce, n)
		})
	}
}

// checkOneResultEach reads the results stream: n results, one per event,
// all provisioned, and one group per event in DingTalk unless flagged.
func checkOneResultEach(t *testing.T, ce *clusterEnv, n int) {
	t.Helper()
	cons, err := ce.js.OrderedConsumer(context.Background(), "PROVISIONER_RESULTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(n + 100)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	flagged := map[string]bool{}
	for m := range batch.Messages() {
		var r result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		per[r.SourceID]++
		if m.Subject() != "group.provisioned" {
			t.Errorf("event %s: %s %s", r.SourceID, m.Subject(), m.Data())
		}
		if r.PossibleDuplicate {
			flagged[r.Name] = true
		}
	}
	if len(per) != n {
		t.Errorf("%d events have a result, want %d", len(per), n)
	}
	for id, k := range per {
		if k != 1 {
			t.Errorf("event %s has %d results", id, k)
		}
	}
	groups := map[string]int{}
	for _, g := range ce.sim.Groups() {
		groups[g.Name]++
	}
	for name, k := range groups {
		if k > 1 && !flagged[name] {
			t.Errorf("%d groups named %q, and its result is not flagged", k, name)
		}
	}
}

// A stream the producers own is left as it is, with one warning when it
// keeps fewer replicas than the worker's.
func TestAProducersStreamIsLeftAlone(t *testing.T) {
	ce := newClusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := ce.js.CreateStream(ctx, jetstream.StreamConfig{Name: "HR_EVENTS", Subjects: []string{"project.*", "event.*"}}); err != nil {
		t.Fatal(err)
	}
	// A stream without a leader yet can be missing from the list of streams
	// a worker reads at start, as it would be from any client's.
	ce.waitFor("the producer's stream led", 30*time.Second, func() bool {
		s, err := ce.js.Stream(ctx, "HR_EVENTS")
		return err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader != ""
	})
	cfg := testConfig()
	cfg.Replicas = 3
	if _, err := ce.newWorker(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if got := ce.replicas("HR_EVENTS"); got != 1 {
		t.Errorf("the producer's stream has %d replicas, want its own 1", got)
	}
	if got := ce.replicas("PROVISIONER_RESULTS"); got != 3 {
		t.Errorf("the worker's results stream has %d replicas, want 3", got)
	}
	if n := countLines(ce.logs.Lines(), `"stream":"HR_EVENTS","replicas":1,"wanted":3`); n != 1 {
		t.Errorf("%d warnings about the producer's stream, want 1:\n%s", n, ce.logs.Tail(10))
	}
}
