package otel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// drainAfterCut bounds how long Shutdown waits, once its deadline has
// passed and the exports are cut, for the batch processor to run through
// the spans still queued (each is then dropped at once, so this takes
// microseconds; the bound only guards against a processor that never ends).
const drainAfterCut = 500 * time.Millisecond

// TraceConfig says where a node's traces go, and how many of them.
type TraceConfig struct {
	Service string
	// Endpoint is host:port (plaintext) or a URL; empty: the standard
	// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// variables, or, with neither, no tracing.
	Endpoint string
	// Sample is the ratio of the traces begun here that are sampled, from
	// 0 (none) to 1 (all), decided by the trace ID at the root; a span
	// whose parent came with a call follows the parent's decision. So a
	// block's trace is kept or dropped whole, the upstream's server span
	// with it. At 1 the standard OTEL_TRACES_SAMPLER variable, if set,
	// decides instead.
	Sample float64
	// Log gets the one line saying how many spans a shutdown dropped;
	// nil: slog.Default().
	Log *slog.Logger
}

// Tracing is a node's tracer provider and how to flush it.
type Tracing struct {
	Provider trace.TracerProvider
	Enabled  bool // false: Provider is a no-op

	tp  *sdktrace.TracerProvider // nil when off
	exp *cutExporter
	log *slog.Logger
}

// SetupTracing exports traces over OTLP/gRPC as cfg says. With no endpoint
// anywhere, tracing is off: a no-op provider whose spans cost nothing.
// OTEL_SERVICE_NAME overrides the service. The W3C trace-context
// propagator is installed globally, so gRPC calls carry a block's trace to
// the upstream store.
func SetupTracing(ctx context.Context, cfg TraceConfig) (*Tracing, error) {
	if math.IsNaN(cfg.Sample) || cfg.Sample < 0 || cfg.Sample > 1 {
		return nil, fmt.Errorf("trace sample ratio: want 0 to 1, got %v", cfg.Sample)
	}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if cfg.Endpoint == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return &Tracing{Provider: noop.NewTracerProvider()}, nil
	}
	var opts []otlptracegrpc.Option
	if cfg.Endpoint != "" {
		if strings.Contains(cfg.Endpoint, "://") {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithInsecure())
		}
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName(cfg.Service)), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return newTracing(exp, res, cfg), nil
}

// newTracing is SetupTracing past the exporter's construction: tests give
// it an exporter of their own.
func newTracing(exp sdktrace.SpanExporter, res *resource.Resource, cfg TraceConfig) *Tracing {
	cut := newCutExporter(exp)
	opts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(cut), sdktrace.WithResource(res), sdktrace.WithIDGenerator(NewIDGenerator())}
	if cfg.Sample < 1 || os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		opts = append(opts, sdktrace.WithSampler(Sampler(cfg.Sample)))
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &Tracing{Provider: tp, Enabled: true, tp: tp, exp: cut, log: log}
}

// Sampler is the sampler of a node's traces: a root is sampled by its
// trace ID at ratio (so the same trace ID always gets the same answer), and
// every other span as its parent was, a remote parent included: the
// upstream's server span is kept exactly when the follower kept the
// block's trace.
func Sampler(ratio float64) sdktrace.Sampler {
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
}

// Shutdown exports the spans not yet exported, until ctx's deadline at the
// latest: then the export in flight is cut, the spans still queued are
// dropped, and one line says how many (a collector that does not answer
// must not hold the process past its shutdown grace: the OTLP exporter
// retries for a minute, and the batch processor drains its queue under a
// context of its own).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, t.exp.cut)
	defer stop()
	err := t.tp.Shutdown(ctx)
	if ctx.Err() != nil {
		t.exp.cut()
		select {
		case <-t.exp.done:
		case <-time.After(drainAfterCut):
		}
	}
	if n := t.exp.dropped.Load(); n > 0 {
		attrs := []any{"spans", n}
		if e := t.exp.lastErr.Load(); e != nil {
			attrs = append(attrs, "err", *e)
		}
		t.log.Warn(fmt.Sprintf("trace export: dropped %d spans at shutdown, collector unreachable", n), attrs...)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil // what it cost is in the line above
	}
	return err
}

// cutExporter is the OTLP exporter as the batch processor sees it, with a
// switch that Shutdown throws at its deadline: the export in flight is
// cancelled (its retries with it) and every later one returns at once, its
// spans counted as dropped. thread-safe.
type cutExporter struct {
	next sdktrace.SpanExporter

	stopped context.Context
	stop    context.CancelFunc
	dropped atomic.Int64
	lastErr atomic.Pointer[error] // the last export's failure
	done    chan struct{}
	once    sync.Once
}

func newCutExporter(next sdktrace.SpanExporter) *cutExporter {
	e := &cutExporter{next: next, done: make(chan struct{})}
	e.stopped, e.stop = context.WithCancel(context.Background())
	return e
}

func (e *cutExporter) cut() { e.stop() }

// ExportSpans implements sdktrace.SpanExporter.
func (e *cutExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if e.stopped.Err() != nil {
		e.dropped.Add(int64(len(spans)))
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.stopped, cancel)()
	err := e.next.ExportSpans(ctx, spans)
	if err != nil {
		if e.stopped.Err() == nil || e.lastErr.Load() == nil {
			e.lastErr.Store(&err) // the cause, rather than the cut
		}
		if e.stopped.Err() != nil {
			// Cut by the shutdown: counted, and not reported again
			// through the SDK's error handler.
			e.dropped.Add(int64(len(spans)))
			return nil
		}
	}
	return err
}

// Shutdown implements sdktrace.SpanExporter. The batch processor calls it
// once its queue is drained, which is what Tracing.Shutdown waits for.
func (e *cutExporter) Shutdown(ctx context.Context) error {
	defer e.once.Do(func() { close(e.done) })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.stopped, cancel)()
	return e.next.Shutdown(ctx)
}

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
