package otel

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is a node's tracer provider and how to flush it.
type Tracing struct {
	Provider trace.TracerProvider
	Enabled  bool // false: Provider is a no-op
	shutdown func(context.Context) error
}

// SetupTracing exports traces over OTLP/gRPC to endpoint (host:port,
// plaintext), or to what the standard OTEL_EXPORTER_OTLP_ENDPOINT /
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT variables say when endpoint is empty.
// With neither, tracing is off: a no-op provider whose spans cost nothing.
// OTEL_SERVICE_NAME overrides service; OTEL_TRACES_SAMPLER and friends set
// the sampler. The W3C trace-context propagator is installed globally, so
// gRPC calls carry a block's trace to the upstream store.
func SetupTracing(ctx context.Context, service, endpoint string) (*Tracing, error) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if endpoint == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return &Tracing{Provider: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}, nil
	}
	var opts []otlptracegrpc.Option
	if endpoint != "" {
		if strings.Contains(endpoint, "://") {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
		}
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName(service)), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Enabled: true, shutdown: tp.Shutdown}, nil
}

// Shutdown flushes the spans not yet exported.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Inject writes ctx's trace context into a map (what messages carry).
func Inject(ctx context.Context) map[string]string {
	m := map[string]string{}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(m))
	return m
}

// Extract returns a context carrying the trace context in m.
func Extract(m map[string]string) context.Context {
	return otel.GetTextMapPropagator().Extract(context.Background(), propagation.MapCarrier(m))
}
