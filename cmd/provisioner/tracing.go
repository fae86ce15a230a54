package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// otelVariables are the standard OpenTelemetry variables the worker reads
// (through the SDK and the OTLP exporter) and docs/operations.md documents.
func otelVariables() []string {
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}
}

// tracerProvider builds the span exporter the standard OTEL_* variables ask
// for: OTLP over HTTP (protobuf) when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set and OTEL_TRACES_EXPORTER is not
// "none"; no spans otherwise (a trace context that arrives with an event
// still reaches its result). The exporter itself reads the endpoint,
// headers, timeout and TLS variables; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES name the service; OTEL_TRACES_SAMPLER samples.
func tracerProvider(ctx context.Context, log zerolog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	none := func(context.Context) error { return nil }
	endpoint := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return nil, none, nil
	}
	if exp := os.Getenv("OTEL_TRACES_EXPORTER"); exp != "" && !strings.EqualFold(exp, "otlp") {
		return nil, nil, usageError(fmt.Sprintf("provisioner: OTEL_TRACES_EXPORTER must be otlp or none, got %q", exp))
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := os.Getenv(name); p != "" && p != "http/protobuf" {
			return nil, nil, usageError(fmt.Sprintf("provisioner: %s must be http/protobuf (OTLP over HTTP, port 4318), got %q", name, p))
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, usageError(fmt.Sprintf("provisioner: OTLP trace exporter: %v", err))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "provisioner")),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		log.Warn().Err(err).Msg("reading the OpenTelemetry resource; some attributes are missing")
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn().Err(err).Msg("OpenTelemetry: exporting spans")
	}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info().Str("endpoint", redactURL(endpoint)).Msg("exporting traces over OTLP/HTTP")
	return tp, tp.Shutdown, nil
}
