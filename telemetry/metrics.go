// Package telemetry is what the provisioner tells the people running it:
// Prometheus metrics (counted as things happen, and read from the shared
// budget and JetStream when scraped) and OpenTelemetry traces (one span per
// event, a child per DingTalk call, the W3C context carried through NATS
// headers). A nil *Telemetry records nothing, so code under test needs none.
package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an event, the outcome label of provisioner_events_total.
const (
	OutcomeProvisioned = "provisioned" // a group.provisioned result published
	OutcomeFailed      = "failed"      // a group.failed result published; reason says why
	OutcomeRepeated    = "repeated"    // an event already handled, its result published again
	OutcomeUpdated     = "updated"     // a group.updated result published
	OutcomeClosed      = "closed"      // a group.closed result published
)

// metrics are the ones counted as things happen.
type metrics struct {
	events      *prometheus.CounterVec
	duplicates  *prometheus.CounterVec
	handedBack  *prometheus.CounterVec
	inFlight    prometheus.Gauge
	deadLetters *prometheus.CounterVec
	calls       *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	budgetWait  *prometheus.HistogramVec
	dingEvents  *prometheus.CounterVec
	names       []string // every metric registered, for MetricNames
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_events_total",
			Help: "Events worked to a result, by input subject and outcome (provisioned, updated, closed, failed, repeated); reason is the failure's reason.",
		}, []string{"subject", "outcome", "reason"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_possible_duplicates_total",
			Help: "Groups provisioned after a create whose outcome was unknown: the group may exist twice.",
		}, []string{"subject"}),
		handedBack: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_events_handed_back_total",
			Help: "Deliveries handed back to JetStream to be worked later, by why (paused, held, stopping, interrupted).",
		}, []string{"why"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisioner_events_in_flight",
			Help: "Events this process is working now.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_dead_letters_total",
			Help: "Failed events kept as dead letters, by input subject and reason.",
		}, []string{"subject", "reason"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_dingtalk_calls_total",
			Help: "HTTP requests sent to DingTalk, token fetches included, by API and answer class (ok, transient, rate_limited, outcome_unknown, quota_exhausted, permanent).",
		}, []string{"api", "class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provisioner_dingtalk_call_duration_seconds",
			Help:    "Time from sending a DingTalk request to having its answer, by API.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}, []string{"api"}),
		budgetWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "provisioner_budget_wait_seconds",
			Help:    "Time a DingTalk call waited for the shared budget (the month's quota and this worker's per-second share), by API.",
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2, 5, 10, 30},
		}, []string{"api"}),
		dingEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisioner_dingtalk_events_total",
			Help: "Group events DingTalk pushed (Stream mode), by event type and outcome (stored, changed, closed, recreated, echo, unmanaged, project_closed, repeated, invalid, ignored).",
		}, []string{"type", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.duplicates, m.handedBack, m.inFlight, m.deadLetters, m.calls, m.latency, m.budgetWait, m.dingEvents} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.names = []string{"provisioner_events_total", "provisioner_possible_duplicates_total", "provisioner_events_handed_back_total",
		"provisioner_events_in_flight", "provisioner_dead_letters_total", "provisioner_dingtalk_calls_total",
		"provisioner_dingtalk_call_duration_seconds", "provisioner_budget_wait_seconds", "provisioner_dingtalk_events_total"}
	return m, nil
}

// Outcomes of a DingTalk event, the outcome label of provisioner_dingtalk_events_total.
const (
	DingTalkStored        = "stored"         // kept in JetStream, then answered SUCCESS
	DingTalkChanged       = "changed"        // folded into its project's record: group.changed published
	DingTalkClosed        = "closed"         // a disband: the record closed, group.closed published
	DingTalkRecreated     = "recreated"      // a disband answered with a new group (ON_HAND_DISBAND=recreate)
	DingTalkEcho          = "echo"           // the record already showed it: no result
	DingTalkUnmanaged     = "unmanaged"      // about a group no project record holds: no result
	DingTalkProjectClosed = "project_closed" // about the group of a closed project: no result
	DingTalkRepeated      = "repeated"       // handled before: its result published again
	DingTalkInvalid       = "invalid"        // unreadable: kept as a dead letter
	DingTalkIgnored       = "ignored"        // not a group event: answered SUCCESS, not stored
)

// DingTalkEvent counts a DingTalk event of type typ ending in outcome.
func (t *Telemetry) DingTalkEvent(typ, outcome string) {
	if t == nil {
		return
	}
	t.m.dingEvents.WithLabelValues(typ, outcome).Inc()
}

// BudgetWait records how long a call to api waited for the budget.
func (t *Telemetry) BudgetWait(api string, d time.Duration) {
	if t == nil {
		return
	}
	t.m.budgetWait.WithLabelValues(api).Observe(d.Seconds())
}

// DeadLetter counts a dead letter kept for an event from subject.
func (t *Telemetry) DeadLetter(subject, reason string) {
	if t == nil {
		return
	}
	t.m.deadLetters.WithLabelValues(subject, reason).Inc()
}

// HandedBack counts a delivery handed back to be worked later.
func (t *Telemetry) HandedBack(why string) {
	if t == nil {
		return
	}
	t.m.handedBack.WithLabelValues(why).Inc()
}

// MetricNames lists every metric registered so far (histograms by their base
// name), so that dashboards and alert rules can be checked against them.
func (t *Telemetry) MetricNames() []string { return append([]string(nil), t.m.names...) }
