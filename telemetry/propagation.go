package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header is a NATS message's headers.
type Header = nats.Header

// headerCarrier reads and writes W3C trace context in NATS headers. NATS
// header names are case-sensitive; a producer writing Traceparent is read too.
type headerCarrier Header

func (c headerCarrier) Get(key string) string {
	if v := Header(c).Get(key); v != "" {
		return v
	}
	for k, vs := range c {
		if strings.EqualFold(k, key) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { Header(c).Set(key, value) }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// mapCarrier is trace context found somewhere else (a CloudEvents extension).
type mapCarrier = propagation.MapCarrier

// Extract returns ctx with the trace context an event arrived with, looked
// for in this order: the W3C traceparent and tracestate headers; the
// CloudEvents binary-mode extension headers ce-traceparent and
// ce-tracestate; the traceparent and tracestate attributes of a structured
// CloudEvents envelope in the body. Without one, ctx is returned as it is.
func Extract(ctx context.Context, h Header, body []byte) context.Context {
	prop := propagation.TraceContext{}
	if out := prop.Extract(ctx, headerCarrier(h)); trace.SpanContextFromContext(out).IsValid() {
		return out
	}
	hc := headerCarrier(h)
	if tp := hc.Get("ce-traceparent"); tp != "" {
		return prop.Extract(ctx, mapCarrier{"traceparent": tp, "tracestate": hc.Get("ce-tracestate")})
	}
	var envelope struct {
		SpecVersion string `json:"specversion"`
		TraceParent string `json:"traceparent"`
		TraceState  string `json:"tracestate"`
	}
	// Most events are plain JSON: look for the envelope's key before decoding.
	if len(body) > 0 && body[0] == '{' && bytes.Contains(body, []byte(`"specversion"`)) && json.Unmarshal(body, &envelope) == nil && envelope.SpecVersion != "" && envelope.TraceParent != "" {
		return prop.Extract(ctx, mapCarrier{"traceparent": envelope.TraceParent, "tracestate": envelope.TraceState})
	}
	return ctx
}

// Inject writes ctx's trace context into h as traceparent and tracestate
// (replacing any there), when ctx has one.
func Inject(ctx context.Context, h Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagation.TraceContext{}.Inject(ctx, headerCarrier(h))
}
