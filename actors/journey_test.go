package actors

import (
	"context"
	"testing"
	"time"

	gotel "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"storesync/otel"
)

// traced is a journeys over an in-memory recorder, and an upstream's
// tracer provider recording into the same place (its server spans join the
// calls' traces through the propagated context, as over gRPC).
type traced struct {
	j        *journeys
	rec      *tracetest.SpanRecorder
	upstream trace.Tracer
}

func newTraced(t *testing.T, sampler sdktrace.Sampler, ids bool) *traced {
	t.Helper()
	// What SetupTracing installs: the Deliver carries the journey as a map.
	gotel.SetTextMapPropagator(propagation.TraceContext{})
	rec := tracetest.NewSpanRecorder()
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler)}
	if ids {
		opts = append(opts, sdktrace.WithIDGenerator(otel.NewIDGenerator()))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	up := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(otel.Sampler(1)))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = up.Shutdown(context.Background()) })
	return &traced{j: newJourneys(tp), rec: rec, upstream: up.Tracer("upstream")}
}

// run plays what the Fetcher's goroutine does for one call launched at
// launched and answered at answered: its fetch span, the upstream's server
// span joined through the call's trace context, the hold span of a held
// call released at released, and for a block the verify span.
func (tr *traced) run(c *callTrace, launched, released, answered time.Time, answer string) {
	fctx, fetch := tr.j.tracer.Start(trace.ContextWithSpan(context.Background(), c.span()), "fetch", trace.WithTimestamp(launched))
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(fctx, carrier)
	sctx := propagation.TraceContext{}.Extract(context.Background(), carrier)
	_, srv := tr.upstream.Start(sctx, "storesync.v1.Store/GetBlockByNumber", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(launched.Add(time.Millisecond)))
	srv.End(trace.WithTimestamp(answered.Add(-time.Millisecond)))
	if !released.IsZero() {
		_, hold := tr.j.tracer.Start(fctx, "hold", trace.WithTimestamp(launched))
		hold.End(trace.WithTimestamp(released))
	}
	fetch.SetAttributes(attribute.String("fetch.answer", answer))
	fetch.End(trace.WithTimestamp(answered))
	if answer == "block" {
		_, v := tr.j.tracer.Start(trace.ContextWithSpan(context.Background(), c.span()), "verify", trace.WithTimestamp(answered))
		v.End(trace.WithTimestamp(answered.Add(time.Millisecond)))
	}
}

// deliverAndCommit plays the Deliver of block n and its commit: a
// queue.wait span under the journey's context, carried as a map.
func (tr *traced) deliverAndCommit(n uint64, at time.Time) {
	ctx := otel.Extract(otel.Inject(tr.j.context(n, at)))
	_, w := tr.j.tracer.Start(ctx, "queue.wait", trace.WithTimestamp(at))
	w.End(trace.WithTimestamp(at.Add(time.Millisecond)))
	tr.j.end(n, attribute.Float64("sync_latency_ms", 1))
}

func (tr *traced) ended() []sdktrace.ReadOnlySpan { return tr.rec.Ended() }

// roots are the ended spans without a parent, by name.
func (tr *traced) roots(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tr.ended() {
		if !s.Parent().IsValid() && s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// inTrace are the ended spans of root's trace, root excluded.
func (tr *traced) inTrace(root sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tr.ended() {
		if s.SpanContext().TraceID() == root.SpanContext().TraceID() && s.SpanContext().SpanID() != root.SpanContext().SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func blockRoot(t *testing.T, tr *traced, n uint64) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, r := range tr.roots("block") {
		if v, _ := attr(r, "block.number"); v.AsInt64() == int64(n) {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("block %d: %d root spans named block, want 1", n, len(found))
	}
	return found[0]
}

// checkTree: every span of root's trace has its parent in the trace (the
// upstream's server span too), so the trace shows as one tree.
func checkTree(t *testing.T, tr *traced, root sdktrace.ReadOnlySpan) {
	t.Helper()
	ids := map[trace.SpanID]string{root.SpanContext().SpanID(): root.Name()}
	spans := tr.inTrace(root)
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = s.Name()
	}
	for _, s := range spans {
		if _, ok := ids[s.Parent().SpanID()]; !ok {
			t.Errorf("span %s of block %s's trace: parent %s not in the trace", s.Name(), root.Name(), s.Parent().SpanID())
		}
	}
}

var base = time.Now().Add(-time.Hour)

func at(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

// TestJourneyProbesApart: a block probed empty three times (polls, not
// held) and then served has a root that starts at the serving call's
// launch, whose trace holds that call's spans and the upstream's server
// span and no empty answer; each empty probe is a trace of its own, named
// probe.
func TestJourneyProbesApart(t *testing.T) {
	tr := newTraced(t, otel.Sampler(1), true)
	const n = 42
	for i := range 3 {
		c := tr.j.launch(n, false, false, at(1000*i))
		tr.run(c, at(1000*i), time.Time{}, at(1000*i+2), "empty")
		tr.j.answered(c, callEnd{outcome: "empty", at: at(1000*i + 2)})
	}
	c := tr.j.launch(n, false, false, at(3000))
	tr.run(c, at(3000), time.Time{}, at(3050), "block")
	tr.j.answered(c, callEnd{outcome: "ok", served: true, at: at(3050)})
	tr.deliverAndCommit(n, at(3060))

	root := blockRoot(t, tr, n)
	if !root.StartTime().Equal(at(3000)) {
		t.Errorf("root starts %s after the first probe, want 3s (the serving call's launch)", root.StartTime().Sub(at(0)))
	}
	names := map[string]int{}
	for _, s := range tr.inTrace(root) {
		names[s.Name()]++
		if v, ok := attr(s, "fetch.answer"); ok && v.AsString() != "block" {
			t.Errorf("block's trace holds a fetch that answered %s", v.AsString())
		}
	}
	if names["fetch"] != 1 || names["verify"] != 1 || names["queue.wait"] != 1 || names["storesync.v1.Store/GetBlockByNumber"] != 1 {
		t.Errorf("block's trace: %v; want one fetch, verify, queue.wait and the upstream's server span", names)
	}
	checkTree(t, tr, root)
	probes := tr.roots("probe")
	if len(probes) != 3 {
		t.Fatalf("%d probe roots, want 3", len(probes))
	}
	for _, p := range probes {
		if v, _ := attr(p, "probe.outcome"); v.AsString() != "empty" {
			t.Errorf("probe outcome %q, want empty", v.AsString())
		}
		if p.SpanContext().TraceID() == root.SpanContext().TraceID() {
			t.Error("a probe is in the block's trace")
		}
		if got := len(tr.inTrace(p)); got != 2 {
			t.Errorf("probe's trace: %d spans besides its root, want its fetch and the server span", got)
		}
	}
}

// TestJourneyHeldStartsAtRelease: a held probe's block has a root that
// starts when the upstream released the call, not at its launch, and the
// spans made under the call before the release (fetch, hold, the
// upstream's server span) are in its trace as its children. With a
// provider that does not honour the preset IDs, the root stays at the
// launch, still one tree.
func TestJourneyHeldStartsAtRelease(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  bool
		want time.Time
	}{{"ids", true, at(900)}, {"no-ids", false, at(0)}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTraced(t, otel.Sampler(1), tc.ids)
			c := tr.j.launch(7, false, true, at(0))
			tr.run(c, at(0), at(900), at(905), "block")
			tr.j.answered(c, callEnd{outcome: "ok", served: true, released: at(900), at: at(905)})
			tr.deliverAndCommit(7, at(910))
			root := blockRoot(t, tr, 7)
			if !root.StartTime().Equal(tc.want) {
				t.Errorf("root starts at %s, want %s", root.StartTime().Sub(at(0)), tc.want.Sub(at(0)))
			}
			if v, _ := attr(root, "fetch.held"); !v.AsBool() {
				t.Error("root does not say its call was held")
			}
			names := map[string]int{}
			for _, s := range tr.inTrace(root) {
				names[s.Name()]++
			}
			if names["fetch"] != 1 || names["hold"] != 1 || names["storesync.v1.Store/GetBlockByNumber"] != 1 {
				t.Errorf("block's trace: %v; want the held call's fetch, hold and the server span", names)
			}
			checkTree(t, tr, root)
			if n := len(tr.roots("block")); n != 1 {
				t.Errorf("%d block roots exported, want 1 (the root sent with the call is never ended)", n)
			}
		})
	}
}

// TestJourneyHedge: a hedge joins the trace of the call it hedges. The
// block's root starts at the first call's launch when that call was not
// held (the stall is the follower's wait), both fetch spans are in it and
// the hedge is an event on it; behind a held call the root starts at the
// hedge's launch (the held call's release is unknown: it never answered).
func TestJourneyHedge(t *testing.T) {
	for _, tc := range []struct {
		name string
		held bool
		want time.Time
	}{{"after-a-stall", false, at(0)}, {"of-a-held-call", true, at(300)}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTraced(t, otel.Sampler(1), true)
			first := tr.j.launch(5, false, tc.held, at(0))
			tr.j.event(5, at(300), "hedged", attribute.String("upstream", "b"))
			hedge := tr.j.launch(5, true, false, at(300))
			tr.run(hedge, at(300), time.Time{}, at(340), "block")
			tr.j.answered(hedge, callEnd{outcome: "ok", served: true, at: at(340)})
			tr.run(first, at(0), time.Time{}, at(345), "error")
			tr.j.answered(first, callEnd{outcome: "cancelled", at: at(345)})
			tr.deliverAndCommit(5, at(350))
			root := blockRoot(t, tr, 5)
			if !root.StartTime().Equal(tc.want) {
				t.Errorf("root starts at %s, want %s", root.StartTime().Sub(at(0)), tc.want.Sub(at(0)))
			}
			fetches := 0
			for _, s := range tr.inTrace(root) {
				if s.Name() == "fetch" {
					fetches++
				}
			}
			if fetches != 2 {
				t.Errorf("block's trace holds %d fetch spans, want both calls'", fetches)
			}
			if ev := root.Events(); len(ev) != 1 || ev[0].Name != "hedged" || !ev[0].Time.Equal(at(300)) {
				t.Errorf("root's events %v, want the hedge at its time", ev)
			}
			if v, _ := attr(root, "fetch.calls"); v.AsInt64() != 2 {
				t.Errorf("fetch.calls %d, want 2", v.AsInt64())
			}
			checkTree(t, tr, root)
			if p := tr.roots("probe"); len(p) != 0 {
				t.Errorf("%d probes, want none: the cancelled call is part of the block's trace", len(p))
			}
		})
	}
}

// TestJourneyFailedCallLinked: a call that fails is a probe of its own
// (status error); the retry is an event on the root of the call that
// brings the block, which links to the failed call's trace.
func TestJourneyFailedCallLinked(t *testing.T) {
	tr := newTraced(t, otel.Sampler(1), true)
	c := tr.j.launch(9, false, false, at(0))
	tr.run(c, at(0), time.Time{}, at(10), "error")
	tr.j.answered(c, callEnd{outcome: "error", at: at(10)})
	tr.j.event(9, at(10), "retry", attribute.String("reason", "connection refused"))
	c = tr.j.launch(9, false, false, at(110))
	tr.run(c, at(110), time.Time{}, at(130), "block")
	tr.j.answered(c, callEnd{outcome: "ok", served: true, at: at(130)})
	tr.deliverAndCommit(9, at(131))

	probes := tr.roots("probe")
	if len(probes) != 1 || probes[0].Status().Code.String() != "Error" {
		t.Fatalf("probes %d (status %v), want the failed call, with an error status", len(probes), probes)
	}
	root := blockRoot(t, tr, 9)
	if !root.StartTime().Equal(at(110)) {
		t.Errorf("root starts at %s, want at the retry's launch", root.StartTime().Sub(at(0)))
	}
	if l := root.Links(); len(l) != 1 || l[0].SpanContext.TraceID() != probes[0].SpanContext().TraceID() {
		t.Errorf("root's links %v, want the failed call's trace", l)
	}
	if ev := root.Events(); len(ev) != 1 || ev[0].Name != "retry" || !ev[0].Time.Equal(at(10)) {
		t.Errorf("root's events %v, want the retry, at its time", ev)
	}
}

// TestJourneyProofLinks: a committed block's root span context is kept for
// its proof's span to link to, the root that was exported (the one
// started at the release, for a held call).
func TestJourneyProofLinks(t *testing.T) {
	tr := newTraced(t, otel.Sampler(1), true)
	c := tr.j.launch(3, false, true, at(0))
	tr.run(c, at(0), at(500), at(501), "block")
	tr.j.answered(c, callEnd{outcome: "ok", served: true, released: at(500), at: at(501)})
	tr.deliverAndCommit(3, at(502))
	sc, ok := tr.j.link(3)
	if !ok {
		t.Fatal("no link kept for block 3")
	}
	_, proof := tr.j.tracer.Start(context.Background(), "proof", trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: sc}))
	proof.End()
	root := blockRoot(t, tr, 3)
	for _, s := range tr.roots("proof") {
		if l := s.Links(); len(l) == 1 && l[0].SpanContext.SpanID() == root.SpanContext().SpanID() && l[0].SpanContext.TraceID() == root.SpanContext().TraceID() {
			return
		}
	}
	t.Fatal("the proof span does not link to the block's root")
}

// TestJourneySampling: at ratio 0 nothing is recorded, the upstream's
// server span included (it follows the call's decision); at a ratio, each
// trace is kept or dropped whole, and about that share of them is kept.
func TestJourneySampling(t *testing.T) {
	play := func(tr *traced, blocks int) {
		for n := uint64(1); n <= uint64(blocks); n++ {
			ms := int(n) * 1000
			p := tr.j.launch(n, false, false, at(ms))
			tr.run(p, at(ms), time.Time{}, at(ms+1), "empty")
			tr.j.answered(p, callEnd{outcome: "empty", at: at(ms + 1)})
			c := tr.j.launch(n, false, true, at(ms+2))
			tr.run(c, at(ms+2), at(ms+400), at(ms+401), "block")
			tr.j.answered(c, callEnd{outcome: "ok", served: true, released: at(ms + 400), at: at(ms + 401)})
			tr.deliverAndCommit(n, at(ms+402))
		}
	}
	none := newTraced(t, otel.Sampler(0), true)
	play(none, 20)
	if got := len(none.ended()); got != 0 {
		t.Fatalf("ratio 0: %d spans recorded, want none", got)
	}
	half := newTraced(t, otel.Sampler(0.5), true)
	const blocks = 200
	play(half, blocks)
	traces := map[trace.TraceID][]sdktrace.ReadOnlySpan{}
	for _, s := range half.ended() {
		traces[s.SpanContext().TraceID()] = append(traces[s.SpanContext().TraceID()], s)
	}
	for id, spans := range traces {
		roots := 0
		for _, s := range spans {
			if !s.Parent().IsValid() {
				roots++
			}
		}
		if roots != 1 {
			t.Errorf("trace %s: %d roots among %d spans, want one: a trace is kept whole", id, roots, len(spans))
		}
	}
	kept := len(half.roots("block"))
	// 200 blocks and 200 probes at one half: 5.6 standard deviations.
	if kept < 60 || kept > 140 || len(half.roots("probe")) < 60 || len(half.roots("probe")) > 140 {
		t.Errorf("ratio 0.5: %d of %d block traces and %d probes kept", kept, blocks, len(half.roots("probe")))
	}
	for _, root := range half.roots("block") {
		if got := len(half.inTrace(root)); got != 5 {
			t.Errorf("a kept block's trace: %d spans besides its root, want 5 (fetch, hold, server, verify, queue.wait)", got)
		}
	}
	t.Logf("ratio 0.5: %d of %d block traces kept", kept, blocks)
}
