package telemetry

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// InstrumentationName names the provisioner's tracer.
const InstrumentationName = "provisioner"

// Options says where telemetry goes.
type Options struct {
	// Registerer takes the metrics; nil: a registry of their own (see Registry).
	Registerer prometheus.Registerer
	// TracerProvider makes the spans; nil: none are recorded, but a trace
	// context that arrives with an event is still passed on to its result.
	TracerProvider trace.TracerProvider
}

// Telemetry records metrics and traces for one process. Create it with New;
// safe for concurrent use. A nil *Telemetry records nothing.
type Telemetry struct {
	m      *metrics
	reg    *prometheus.Registry // set when New made the registry
	regr   prometheus.Registerer
	tracer trace.Tracer
}

// New registers the metrics and takes the tracer. It fails only when the
// metrics are registered twice with one Registerer.
func New(o Options) (*Telemetry, error) {
	t := &Telemetry{}
	reg := o.Registerer
	if reg == nil {
		t.reg = prometheus.NewRegistry()
		reg = t.reg
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering metrics: %w", err)
	}
	t.m, t.regr = m, reg
	tp := o.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	t.tracer = tp.Tracer(InstrumentationName)
	return t, nil
}

// Registry is the registry New made when Options.Registerer was nil.
func (t *Telemetry) Registry() *prometheus.Registry { return t.reg }

// Event is the telemetry of one delivery of one event: its span and its
// place among the events in flight. End it once.
type Event struct {
	t       *Telemetry
	span    trace.Span
	subject string
}

// StartEvent begins a delivery's span, as a child of the trace context the
// event arrived with (see Extract), and counts it in flight.
func (t *Telemetry) StartEvent(ctx context.Context, subject string, h Header, body []byte) (context.Context, *Event) {
	ctx = Extract(ctx, h, body)
	if t == nil {
		return ctx, nil
	}
	ctx, span := t.tracer.Start(ctx, "provision "+subject, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject)))
	t.m.inFlight.Inc()
	return ctx, &Event{t: t, span: span, subject: subject}
}

// Identify names the event on its span, once its id is known.
func (e *Event) Identify(eventID string, delivery uint64) {
	if e == nil {
		return
	}
	e.span.SetAttributes(attribute.String("provisioner.event_id", eventID), attribute.Int64("messaging.delivery_count", int64(delivery)))
}

// Provisioned counts the event as provisioned.
func (e *Event) Provisioned(possibleDuplicate bool) {
	if e == nil {
		return
	}
	e.t.m.events.WithLabelValues(e.subject, OutcomeProvisioned, "").Inc()
	if possibleDuplicate {
		e.t.m.duplicates.WithLabelValues(e.subject).Inc()
	}
	e.span.SetAttributes(attribute.String("provisioner.outcome", OutcomeProvisioned), attribute.Bool("provisioner.possible_duplicate", possibleDuplicate))
}

// Changed counts an update or a close that reached its result: outcome is
// OutcomeUpdated or OutcomeClosed.
func (e *Event) Changed(outcome string) {
	if e == nil {
		return
	}
	e.t.m.events.WithLabelValues(e.subject, outcome, "").Inc()
	e.span.SetAttributes(attribute.String("provisioner.outcome", outcome))
}

// Repeated counts an event that was already handled: its result went out again.
func (e *Event) Repeated() {
	if e == nil {
		return
	}
	e.t.m.events.WithLabelValues(e.subject, OutcomeRepeated, "").Inc()
	e.span.SetAttributes(attribute.String("provisioner.outcome", OutcomeRepeated))
}

// Failed counts the event as failed for reason, with the failure on its span.
func (e *Event) Failed(reason string, err error) {
	if e == nil {
		return
	}
	e.t.m.events.WithLabelValues(e.subject, OutcomeFailed, reason).Inc()
	e.span.SetAttributes(attribute.String("provisioner.outcome", OutcomeFailed), attribute.String("provisioner.reason", reason))
	e.span.SetStatus(codes.Error, reason)
	if err != nil {
		e.span.RecordError(err)
	}
}

// HandedBack counts the delivery as handed back, and says why on its span.
func (e *Event) HandedBack(why, detail string) {
	if e == nil {
		return
	}
	e.t.HandedBack(why)
	e.span.AddEvent("handed back", trace.WithAttributes(attribute.String("provisioner.why", why), attribute.String("provisioner.detail", detail)))
}

// End ends the span and the event's time in flight.
func (e *Event) End() {
	if e == nil {
		return
	}
	e.t.m.inFlight.Dec()
	e.span.End()
}
