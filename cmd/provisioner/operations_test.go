package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"provisioner/dingtalk/sim"
	"provisioner/internal/natstest"
)

// pipeline is provisioner run, in-process, between a real NATS server and
// the DingTalk simulator, with a subscriber that keeps every result.
type pipeline struct {
	t       *testing.T
	ns      *server.Server
	sim     *sim.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	addr    string // HTTP_ADDR as bound
	logs    *natstest.LogBuffer
	mu      sync.Mutex
	results []*nats.Msg // guarded by mu
}

// startPipeline starts NATS, the simulator and provisioner run, and waits
// until the worker serves HTTP and has made its streams.
func startPipeline(t *testing.T, cfg sim.Config) *pipeline {
	t.Helper()
	p := &pipeline{t: t, ns: natstest.Server(t), logs: &natstest.LogBuffer{}}
	cfg.AppKey, cfg.AppSecret = "key", "very-secret-value"
	p.sim = sim.New(cfg)
	srv := httptest.NewServer(p.sim)
	t.Cleanup(srv.Close)
	validEnv(t)
	t.Setenv("NATS_URL", p.ns.ClientURL())
	t.Setenv("DINGTALK_BASE_URL", srv.URL)
	t.Setenv("DINGTALK_API_BASE_URL", srv.URL)
	t.Setenv("HTTP_ADDR", "127.0.0.1:0")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Main{Stdout: p.logs, Stderr: p.logs}).Run(ctx, []string{"run"}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if strings.Contains(p.logs.String(), "very-secret-value") {
			t.Error("the app secret is in the logs")
		}
	})
	p.nc = natstest.Connect(t, p.ns)
	p.js, _ = jetstream.New(p.nc)
	if _, err := p.nc.Subscribe("group.*", func(m *nats.Msg) {
		p.mu.Lock()
		p.results = append(p.results, m)
		p.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the worker to serve HTTP", func() bool {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			var l struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Message, "serving /healthz") {
				p.addr = l.Addr
				return true
			}
		}
		return false
	})
	return p
}

// waitFor polls cond until it holds, for at most a minute.
func (p *pipeline) waitFor(what string, cond func() bool) {
	p.t.Helper()
	natstest.Eventually(p.t, time.Minute, what, cond, func() string { return "worker log:\n" + p.logs.String() })
}

// publish sends an event body with headers, retrying while the worker is
// still creating its stream.
func (p *pipeline) publish(subject, body string, header nats.Header) {
	p.t.Helper()
	msg := &nats.Msg{Subject: subject, Data: []byte(body), Header: header}
	p.waitFor("the events stream", func() bool {
		_, err := p.js.PublishMsg(context.Background(), msg)
		if err != nil && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			p.t.Fatalf("publish: %v", err)
		}
		return err == nil
	})
}

// resultsFor returns the results received for an event id, by subject.
func (p *pipeline) resultsFor(id string) (provisioned, failed []*nats.Msg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.results {
		var r struct {
			SourceID string `json:"source_id"`
		}
		if json.Unmarshal(m.Data, &r) != nil || r.SourceID != id {
			continue
		}
		if m.Subject == "group.provisioned" {
			provisioned = append(provisioned, m)
		} else {
			failed = append(failed, m)
		}
	}
	return provisioned, failed
}

// storedResults counts the results stream's messages by subject.
func (p *pipeline) storedResults() map[string]uint64 {
	p.t.Helper()
	s, err := p.js.Stream(context.Background(), "PROVISIONER_RESULTS")
	if err != nil {
		p.t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		p.t.Fatal(err)
	}
	return info.State.Subjects
}

// scrape reads /metrics.
func (p *pipeline) scrape() map[string]*dto.MetricFamily {
	p.t.Helper()
	resp, err := http.Get("http://" + p.addr + MetricsPath)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("%s: %s", MetricsPath, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		p.t.Fatalf("parsing %s: %v", MetricsPath, err)
	}
	return families
}

// sum adds up a family's samples whose labels include want.
func sum(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	total := 0.0
	f := families[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func traceparent(i int) (header, traceID string) {
	traceID = fmt.Sprintf("4bf92f3577b34da6a3ce929d%08x", i)
	return "00-" + traceID + "-00f067aa0ba902b7-01", traceID
}

// After a run with busy answers, /metrics agrees with what the simulator and
// the results stream saw, and every result carries its event's trace and
// CloudEvents attributes.
func TestMetricsTracesAndCloudEventsAfterBusyAnswers(t *testing.T) {
	p := startPipeline(t, sim.Config{UnknownUsers: []string{"ghost"}, Seed: 7, Faults: sim.Faults{BusyRate: 0.3}})
	const good, bad = 12, 2
	for i := range good + bad {
		member := "u2"
		if i >= good {
			member = "ghost"
		}
		tp, _ := traceparent(i)
		h := nats.Header{"traceparent": {tp}}
		if i%3 == 1 { // a CloudEvents producer in binary mode
			h = nats.Header{"ce-traceparent": {tp}, "ce-specversion": {"1.0"}}
		}
		p.publish("project.created", fmt.Sprintf(`{"id":"m-%d","project_id":"P%d","name":"Metrics %d","owner":"u1","members":[%q]}`, i, i, i, member), h)
	}
	p.waitFor("every result in the stream", func() bool {
		st := p.storedResults()
		return st["group.provisioned"] == good && st["group.failed"] == bad
	})
	p.waitFor("every result delivered", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.results) >= good+bad
	})

	for i := range good + bad {
		id := fmt.Sprintf("m-%d", i)
		prov, failed := p.resultsFor(id)
		msgs := append(prov, failed...)
		if len(msgs) == 0 {
			t.Errorf("%s: no result", id)
			continue
		}
		m := msgs[0]
		_, traceID := traceparent(i)
		if got := m.Header.Get("traceparent"); !strings.HasPrefix(got, "00-"+traceID+"-") {
			t.Errorf("%s: result traceparent %q, want trace id %s", id, got, traceID)
		}
		wantType := "provisioner.group.provisioned"
		if m.Subject == "group.failed" {
			wantType = "provisioner.group.failed"
		}
		for k, want := range map[string]string{"ce-specversion": "1.0", "ce-source": "/provisioner", "ce-type": wantType, "content-type": "application/json"} {
			if got := m.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", id, k, got, want)
			}
		}
		if m.Header.Get("ce-id") == "" || m.Header.Get("ce-time") == "" {
			t.Errorf("%s: result lacks ce-id or ce-time: %v", id, m.Header)
		}
	}

	stats := p.sim.Stats()
	if stats.Busy == 0 {
		t.Fatalf("the simulator answered no busy: %+v", stats)
	}
	m := p.scrape()
	t.Logf("the simulator saw %v (%d busy); /metrics counts %v calls", stats.Calls, stats.Busy, sum(m, "provisioner_dingtalk_calls_total", nil))
	for api, n := range stats.Calls {
		if got := sum(m, "provisioner_dingtalk_calls_total", map[string]string{"api": api}); got != float64(n) {
			t.Errorf("provisioner_dingtalk_calls_total{api=%q} = %v, the simulator saw %d", api, got, n)
		}
	}
	if got, want := sum(m, "provisioner_dingtalk_calls_total", nil), float64(total(stats.Calls)); got != want {
		t.Errorf("calls in all: %v, the simulator saw %v", got, want)
	}
	if got := sum(m, "provisioner_dingtalk_calls_total", map[string]string{"class": "transient"}); got != float64(stats.Busy) {
		t.Errorf("calls answered transient: %v, the simulator answered %d busy", got, stats.Busy)
	}
	stored := p.storedResults()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"provisioner_events_total", map[string]string{"outcome": "provisioned", "subject": "project.created"}, float64(stored["group.provisioned"])},
		{"provisioner_events_total", map[string]string{"outcome": "failed", "reason": "dingtalk_rejected"}, float64(stored["group.failed"])},
		{"provisioner_dead_letters_total", map[string]string{"reason": "dingtalk_rejected"}, bad},
		{"provisioner_events_in_flight", nil, 0},
		{"provisioner_consumer_pending_messages", nil, 0},
		{"provisioner_consumer_ack_pending_messages", nil, 0},
		{"provisioner_paused", nil, 0},
		{"provisioner_budget_share_calls", nil, 20},
		{"provisioner_dingtalk_call_duration_seconds", nil, float64(total(stats.Calls))},
	} {
		if got := sum(m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if m["provisioner_quota_used_calls"] == nil || m["provisioner_budget_wait_seconds"] == nil {
		t.Errorf("no quota or budget-wait metrics in /metrics")
	}
}

func total(calls map[string]int) int {
	n := 0
	for _, v := range calls {
		n += v
	}
	return n
}
