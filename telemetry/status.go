package telemetry

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"provisioner/budget"
)

// Sources are what is read when the metrics are scraped. Any may be nil.
type Sources struct {
	Budget   func(context.Context) (budget.Status, error) // the month's calls and the pause
	Pacer    func() (budget.PacerStatus, bool)            // this worker's per-second share; false: not paced
	Consumer func(context.Context) (*jetstream.ConsumerInfo, error)
	// Halt says why this worker takes no events because DingTalk refused its
	// configuration (credentials, permission, ip_allowlist); false: it takes them.
	Halt func() (reason string, halted bool)
	// Uncaptured lists the input subjects no stream captures (events
	// published on them are refused at the producer).
	Uncaptured func() []string
	// StreamConnected says whether this worker's Stream-mode connection to
	// DingTalk is open (DINGTALK_EVENTS=stream); nil when it is off.
	StreamConnected func() bool
}

// WatchStatus registers, where New registered the metrics, a collector that
// reads sources at each scrape (within two seconds; what cannot be read is
// left out of that scrape and counted in provisioner_scrape_errors_total).
func (t *Telemetry) WatchStatus(s Sources) error {
	reg := t.regr
	c := &statusCollector{s: s,
		quotaUsed:  prometheus.NewDesc("provisioner_quota_used_calls", "DingTalk calls counted against this month's quota by all workers (reserved blocks included).", nil, nil),
		quotaLimit: prometheus.NewDesc("provisioner_quota_limit_calls", "The month's quota of DingTalk calls (DINGTALK_MONTHLY_QUOTA); absent when there is none.", nil, nil),
		paused:     prometheus.NewDesc("provisioner_paused", "1 while work is paused (quota, operator), else 0.", []string{"reason"}, nil),
		used:       prometheus.NewDesc("provisioner_budget_used_calls", "DingTalk calls this worker released in the last second, by API.", []string{"api"}, nil),
		share:      prometheus.NewDesc("provisioner_budget_share_calls", "Calls per API this worker may release per window (its share of DINGTALK_QPS).", nil, nil),
		workers:    prometheus.NewDesc("provisioner_budget_workers", "Live workers sharing the per-second budget.", nil, nil),
		pending:    prometheus.NewDesc("provisioner_consumer_pending_messages", "Events in the stream not yet delivered to the durable consumer (its lag).", nil, nil),
		halted:     prometheus.NewDesc("provisioner_misconfigured", "1 while DingTalk refuses this worker's configuration and it takes no events, by reason (credentials, permission, ip_allowlist), else 0.", []string{"reason"}, nil),
		uncaptured: prometheus.NewDesc("provisioner_uncaptured_subjects", "1 for each input subject no stream captures: JetStream refuses events published on it until it is added to the producers' stream.", []string{"subject"}, nil),
		ackPending: prometheus.NewDesc("provisioner_consumer_ack_pending_messages", "Events delivered to workers and not yet settled.", nil, nil),
		stream:     prometheus.NewDesc("provisioner_dingtalk_stream_connected", "1 while this worker's Stream-mode connection to DingTalk is open (DINGTALK_EVENTS=stream), else 0; absent when off.", nil, nil),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisioner_scrape_errors_total",
			Help: "Scrapes that could not read a source (budget, consumer)."}, []string{"source"}),
	}
	if err := reg.Register(c); err != nil {
		return err
	}
	if err := reg.Register(c.errors); err != nil {
		return err
	}
	t.m.names = append(t.m.names, "provisioner_quota_used_calls", "provisioner_quota_limit_calls", "provisioner_paused",
		"provisioner_budget_used_calls", "provisioner_budget_share_calls", "provisioner_budget_workers",
		"provisioner_consumer_pending_messages", "provisioner_consumer_ack_pending_messages", "provisioner_scrape_errors_total",
		"provisioner_misconfigured", "provisioner_uncaptured_subjects", "provisioner_dingtalk_stream_connected")
	return nil
}

type statusCollector struct {
	s                                                   Sources
	quotaUsed, quotaLimit, paused, used, share, workers *prometheus.Desc
	pending, ackPending, halted, uncaptured, stream     *prometheus.Desc
	errors                                              *prometheus.CounterVec
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.quotaUsed, c.quotaLimit, c.paused, c.used, c.share, c.workers, c.pending, c.ackPending, c.halted, c.uncaptured, c.stream} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.s.StreamConnected != nil {
		v := 0.0
		if c.s.StreamConnected() {
			v = 1
		}
		gauge(c.stream, v)
	}
	if c.s.Uncaptured != nil {
		for _, subj := range c.s.Uncaptured() {
			gauge(c.uncaptured, 1, subj)
		}
	}
	if c.s.Budget != nil {
		if st, err := c.s.Budget(ctx); err != nil {
			c.errors.WithLabelValues("budget").Inc()
		} else {
			gauge(c.quotaUsed, float64(st.Calls))
			if st.MonthlyQuota > 0 {
				gauge(c.quotaLimit, float64(st.MonthlyQuota))
			}
			if st.Paused != nil {
				gauge(c.paused, 1, st.Paused.Reason)
			} else {
				gauge(c.paused, 0, "")
			}
		}
	}
	if c.s.Pacer != nil {
		if st, ok := c.s.Pacer(); ok {
			gauge(c.share, float64(st.Share))
			gauge(c.workers, float64(st.Workers))
			for api, n := range st.Used {
				gauge(c.used, float64(n), api)
			}
		}
	}
	if c.s.Halt != nil {
		if reason, ok := c.s.Halt(); ok {
			gauge(c.halted, 1, reason)
		} else {
			gauge(c.halted, 0, "")
		}
	}
	if c.s.Consumer != nil {
		if info, err := c.s.Consumer(ctx); err != nil {
			c.errors.WithLabelValues("consumer").Inc()
		} else {
			gauge(c.pending, float64(info.NumPending))
			gauge(c.ackPending, float64(info.NumAckPending))
		}
	}
}
