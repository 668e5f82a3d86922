package otel

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestSetupTracingSample: a ratio outside [0, 1] is refused, naming it.
func TestSetupTracingSample(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	for _, bad := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1)} {
		if _, err := SetupTracing(context.Background(), TraceConfig{Service: "x", Sample: bad}); err == nil || !strings.Contains(err.Error(), "sample") {
			t.Errorf("sample %v: err %v, want one naming the sample ratio", bad, err)
		}
	}
	tr, err := SetupTracing(context.Background(), TraceConfig{Service: "x", Sample: 0.5})
	if err != nil || tr.Enabled {
		t.Fatalf("no endpoint: %v, enabled %v; want tracing off", err, tr.Enabled)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSamplerParentBased: at ratio 0 no root is sampled and at 1 all are;
// a child follows its root, and a span whose parent came over the wire
// follows the caller's decision whatever this node's ratio (the upstream's
// server span is in a block's trace exactly when the follower kept it).
func TestSamplerParentBased(t *testing.T) {
	tracer := func(ratio float64) (trace.Tracer, *tracetest.SpanRecorder) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(Sampler(ratio)), sdktrace.WithIDGenerator(NewIDGenerator()))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp.Tracer("test"), rec
	}
	remote := func(sampled bool) context.Context {
		var flags trace.TraceFlags
		if sampled {
			flags = trace.FlagsSampled
		}
		return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: flags, Remote: true}))
	}
	for _, ratio := range []float64{0, 0.3, 1} {
		tr, rec := tracer(ratio)
		sampled := 0
		const roots = 1000
		for range roots {
			ctx, root := tr.Start(context.Background(), "block")
			_, child := tr.Start(ctx, "fetch")
			if child.SpanContext().IsSampled() != root.SpanContext().IsSampled() {
				t.Fatalf("ratio %v: child sampled %v under a root sampled %v", ratio, child.SpanContext().IsSampled(), root.SpanContext().IsSampled())
			}
			if root.SpanContext().IsSampled() {
				sampled++
			}
			child.End()
			root.End()
		}
		if len(rec.Ended()) != 2*sampled {
			t.Errorf("ratio %v: %d spans recorded for %d sampled roots", ratio, len(rec.Ended()), sampled)
		}
		// 1000 roots at 0.3: 300 +- 14.5; the bounds are 6 deviations.
		if want := ratio * roots; math.Abs(float64(sampled)-want) > 90 {
			t.Errorf("ratio %v: %d of %d roots sampled", ratio, sampled, roots)
		}
		_, in := tr.Start(remote(true), "GetBlockByNumber", trace.WithSpanKind(trace.SpanKindServer))
		_, out := tr.Start(remote(false), "GetBlockByNumber", trace.WithSpanKind(trace.SpanKindServer))
		if !in.SpanContext().IsSampled() || out.SpanContext().IsSampled() {
			t.Errorf("ratio %v: server spans under a sampled / unsampled caller sampled %v / %v; want the caller's decision",
				ratio, in.SpanContext().IsSampled(), out.SpanContext().IsSampled())
		}
	}
}

// TestPresetIDs: a root started with WithIDs takes the preset trace and
// span IDs, and the same sampling decision (the ratio sampler decides by
// trace ID); its children get IDs of their own.
func TestPresetIDs(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(Sampler(0.5)), sdktrace.WithIDGenerator(NewIDGenerator()))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("test")
	for range 50 {
		_, first := tr.Start(context.Background(), "block", trace.WithNewRoot())
		sc := first.SpanContext()
		ctx, second := tr.Start(WithIDs(context.Background(), sc), "block", trace.WithNewRoot())
		got := second.SpanContext()
		if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || got.IsSampled() != sc.IsSampled() {
			t.Fatalf("preset root %v, want the IDs and decision of %v", got, sc)
		}
		_, child := tr.Start(ctx, "fetch")
		if child.SpanContext().SpanID() == sc.SpanID() || child.SpanContext().TraceID() != sc.TraceID() {
			t.Fatalf("child of the preset root: %v", child.SpanContext())
		}
	}
}

// stalledExporter is a collector that never answers: every export waits
// until its context ends.
type stalledExporter struct{ exports chan struct{} }

func (e *stalledExporter) ExportSpans(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
	select {
	case e.exports <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (e *stalledExporter) Shutdown(ctx context.Context) error { return nil }

// countingExporter is a collector that answers at once.
type countingExporter struct{ spans atomic.Int64 }

func (e *countingExporter) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	e.spans.Add(int64(len(s)))
	return nil
}

func (e *countingExporter) Shutdown(ctx context.Context) error { return nil }

// TestShutdownBounded: with a collector that never answers, Shutdown
// returns at its deadline (the export in flight cut, the spans still
// queued dropped) and one line says how many were dropped; with one that
// answers, every span is exported and nothing is said.
func TestShutdownBounded(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	exp := &stalledExporter{exports: make(chan struct{}, 1)}
	tr := newTracing(exp, resource.Empty(), TraceConfig{Sample: 1, Log: log})
	tracer := tr.Provider.Tracer("test")
	const spans = 3000 // more than a batch (512): one export in flight, the rest queued
	for range spans {
		_, s := tracer.Start(context.Background(), "block")
		s.End()
	}
	select {
	case <-exp.exports:
	case <-time.After(10 * time.Second):
		t.Fatal("no export began")
	}
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("shutdown with a stalled collector took %s (deadline %s)", took.Round(time.Millisecond), deadline)
	if took > deadline+time.Second {
		t.Errorf("shutdown took %s, want about its deadline %s", took, deadline)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "trace export: dropped") || !strings.Contains(lines[0], "at shutdown, collector unreachable") {
		t.Fatalf("log %q, want one line on the dropped spans", logs.String())
	}
	if n := tr.exp.dropped.Load(); n < 512 || n > spans {
		t.Errorf("%d spans counted dropped, want at least the batch in flight and at most %d", n, spans)
	}

	logs.Reset()
	counted := &countingExporter{}
	tr = newTracing(counted, resource.Empty(), TraceConfig{Sample: 1, Log: log})
	tracer = tr.Provider.Tracer("test")
	for range 100 {
		_, s := tracer.Start(context.Background(), "block")
		s.End()
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counted.spans.Load(); got != 100 || logs.Len() != 0 {
		t.Errorf("collector answering: %d of 100 spans exported, log %q", got, logs.String())
	}
}
