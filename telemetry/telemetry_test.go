package telemetry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"provisioner/budget"
	"provisioner/dingtalk"
	"provisioner/dingtalk/sim"
	"provisioner/telemetry"
)

// newTelemetry records spans in memory, with every metric and status source
// filled so that each family appears once.
func newTelemetry(t *testing.T) (*telemetry.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(telemetry.Options{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	err = tel.WatchStatus(telemetry.Sources{
		Budget: func(context.Context) (budget.Status, error) {
			return budget.Status{Calls: 120, MonthlyQuota: 5000, Paused: &budget.Pause{Reason: budget.ReasonOperator}}, nil
		},
		Pacer: func() (budget.PacerStatus, bool) {
			return budget.PacerStatus{Workers: 2, Share: 10, Used: map[string]int{"v1.0/im/group/create": 4}}, true
		},
		Consumer: func(context.Context) (*jetstream.ConsumerInfo, error) {
			return &jetstream.ConsumerInfo{NumPending: 7, NumAckPending: 3}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tel, rec
}

// Every metric follows Prometheus's naming conventions, as promlint checks them.
func TestMetricsPassPromlint(t *testing.T) {
	tel, _ := newTelemetry(t)
	ctx, ev := tel.StartEvent(context.Background(), "project.created", nil, nil)
	ev.Provisioned(true)
	ev.Failed("dingtalk_rejected", errors.New("x"))
	ev.Repeated()
	ev.HandedBack("paused", "work is paused")
	ev.End()
	tel.DeadLetter("project.created", "dingtalk_rejected")
	tel.BudgetWait("v1.0/im/group/create", time.Millisecond)
	tel.CallObserver(nil).StartCall(ctx, "v1.0/im/group/create")(nil)

	families, err := tel.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, want := range []string{
		"provisioner_events_total", "provisioner_possible_duplicates_total", "provisioner_events_handed_back_total",
		"provisioner_events_in_flight", "provisioner_dead_letters_total", "provisioner_dingtalk_calls_total",
		"provisioner_dingtalk_call_duration_seconds", "provisioner_budget_wait_seconds", "provisioner_quota_used_calls",
		"provisioner_quota_limit_calls", "provisioner_paused", "provisioner_budget_used_calls", "provisioner_budget_share_calls",
		"provisioner_budget_workers", "provisioner_consumer_pending_messages", "provisioner_consumer_ack_pending_messages",
	} {
		if !names[want] {
			t.Errorf("%s is not gathered", want)
		}
	}
}

// The trace context is found in each place a producer may put it.
func TestExtractFindsTheTraceContext(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const tp = "00-" + traceID + "-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name   string
		header telemetry.Header
		body   string
		want   string
	}{
		{"W3C header", telemetry.Header{"traceparent": {tp}}, `{}`, traceID},
		{"header in another case", telemetry.Header{"Traceparent": {tp}}, `{}`, traceID},
		{"CloudEvents binary mode", telemetry.Header{"ce-traceparent": {tp}}, `{}`, traceID},
		{"CloudEvents structured mode", nil, `{"specversion":"1.0","id":"x","traceparent":"` + tp + `","data":{}}`, traceID},
		{"a body that is not an envelope", nil, `{"traceparent":"` + tp + `"}`, ""},
		{"a malformed traceparent", telemetry.Header{"traceparent": {"00-zz-00f067aa0ba902b7-01"}}, `{}`, ""},
		{"none", nil, `{}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), tc.header, []byte(tc.body)))
			got := ""
			if sc.IsValid() {
				got = sc.TraceID().String()
			}
			if got != tc.want {
				t.Errorf("trace id %q, want %q", got, tc.want)
			}
			h := telemetry.Header{}
			telemetry.Inject(telemetry.Extract(context.Background(), tc.header, []byte(tc.body)), h)
			if (h.Get("traceparent") != "") != (tc.want != "") || !strings.Contains(h.Get("traceparent"), tc.want) {
				t.Errorf("injected %v", h)
			}
		})
	}
}

// Each DingTalk call is a child span of the event's, named after the API,
// with DingTalk's answer and never the token or the secret.
func TestCallSpansAreChildrenWithoutSecrets(t *testing.T) {
	tel, rec := newTelemetry(t)
	s := sim.New(sim.Config{AppKey: "k", AppSecret: "the-app-secret", UnknownUsers: []string{"ghost"}})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	var tok string
	seeToken := roundTripper(func(r *http.Request) (*http.Response, error) {
		if v := r.Header.Get("x-acs-dingtalk-access-token"); v != "" {
			tok = v
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	client, err := dingtalk.NewClient(dingtalk.Options{BaseURL: srv.URL, APIBaseURL: srv.URL, AppKey: "k", AppSecret: "the-app-secret",
		Observer: tel.CallObserver(nil), HTTPClient: &http.Client{Transport: seeToken}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, ev := tel.StartEvent(context.Background(), "project.created",
		telemetry.Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, nil)
	_, err = client.CreateChat(ctx, &dingtalk.CreateChatRequest{Name: "n", Owner: "u1", UserIDs: []string{"u1", "ghost"}})
	if dingtalk.Classify(err) != dingtalk.Permanent {
		t.Fatalf("create with an unknown member: %v", err)
	}
	ev.Failed("dingtalk_rejected", err)
	ev.End()

	spans := rec.Ended()
	var event sdktrace.ReadOnlySpan
	calls := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		if sp.Name() == "provision project.created" {
			event = sp
		} else {
			calls[sp.Name()] = sp
		}
	}
	if event == nil || event.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("no event span in the producer's trace: %v", spans)
	}
	create := calls["dingtalk v1.0/im/group/create"]
	if create == nil || calls["dingtalk v1.0/oauth2/accessToken"] == nil {
		t.Fatalf("call spans: %v", calls)
	}
	if create.Parent().SpanID() != event.SpanContext().SpanID() {
		t.Errorf("the create's parent is %v, want the event's span", create.Parent().SpanID())
	}
	attrs := map[string]string{}
	for _, a := range create.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["dingtalk.class"] != "permanent" || attrs["dingtalk.code"] == "" || attrs["http.response.status_code"] != "400" {
		t.Errorf("create span attributes: %v", attrs)
	}
	if tok == "" {
		t.Fatal("no token was sent")
	}
	for _, sp := range spans {
		var all strings.Builder
		all.WriteString(sp.Name() + sp.Status().Description)
		for _, a := range sp.Attributes() {
			all.WriteString(" " + a.Value.Emit())
		}
		for _, e := range sp.Events() {
			for _, a := range e.Attributes {
				all.WriteString(" " + a.Value.Emit())
			}
		}
		if strings.Contains(all.String(), "the-app-secret") || strings.Contains(all.String(), tok) {
			t.Errorf("span %q holds a secret: %s", sp.Name(), all.String())
		}
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
