package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"provisioner/dingtalk"
)

// ClassOK is the class label of a call DingTalk answered with success.
const ClassOK = "ok"

// CallObserver returns the dingtalk.Observer that counts each DingTalk call
// by API and answer class, times it, and traces it as a child of the
// caller's span. Attributes name the API, the HTTP status, DingTalk's code
// and request id: never a URL, a token or a secret.
func (t *Telemetry) CallObserver(now func() time.Time) dingtalk.Observer {
	if now == nil {
		now = time.Now
	}
	return &callObserver{t: t, now: now}
}

type callObserver struct {
	t   *Telemetry
	now func() time.Time
}

func (o *callObserver) StartCall(ctx context.Context, api string) func(error) {
	if o.t == nil {
		return func(error) {}
	}
	start := o.now()
	_, span := o.t.tracer.Start(ctx, "dingtalk "+api, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("dingtalk.api", api)))
	return func(err error) {
		o.t.m.latency.WithLabelValues(api).Observe(o.now().Sub(start).Seconds())
		class := ClassOK
		var de *dingtalk.Error
		if err != nil {
			class = dingtalk.Classify(err).String()
		}
		if errors.As(err, &de) {
			if de.HTTPStatus != 0 {
				span.SetAttributes(attribute.Int("http.response.status_code", de.HTTPStatus))
			}
			if de.ErrCode != 0 {
				span.SetAttributes(attribute.Int("dingtalk.errcode", de.ErrCode))
			}
			if de.Code != "" {
				span.SetAttributes(attribute.String("dingtalk.code", de.Code))
			}
			if de.RequestID != "" {
				span.SetAttributes(attribute.String("dingtalk.request_id", de.RequestID))
			}
		}
		span.SetAttributes(attribute.String("dingtalk.class", class))
		if err != nil {
			span.SetStatus(codes.Error, err.Error()) // *Error texts hold no token or secret
		}
		span.End()
		o.t.m.calls.WithLabelValues(api, class).Inc()
	}
}
