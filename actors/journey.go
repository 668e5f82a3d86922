package actors

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"storesync/otel"
	"storesync/state"
	"storesync/store"
)

// Bounds of what journeys keep.
const (
	// keepLinks is how many committed blocks keep their root span context,
	// so that their proofs, applied later, can link to them.
	keepLinks = 4096
	// keepMarks is how many retries, hedges and failed calls one block not
	// yet served keeps for its root: a block an upstream keeps failing
	// would otherwise grow its list for as long as it fails.
	keepMarks = 16
)

// journeys holds the traces of the Fetcher's calls and of each block's
// journey. Every call starts a trace of its own at its launch, whose root
// goes out with the call (the upstream's server span joins it); a hedge
// joins the trace of the call it hedges. The trace whose call brings a
// block becomes that block's journey: its root, `block`, starts where the
// follower began to wait for a block that existed (below), and its stages
// (fetch, verify, queue.wait, apply and its media) are children of it
// whichever actor runs them, until the commit ends it. A trace whose calls
// bring no block (past the tip, failed, cancelled) ends at its last answer,
// renamed `probe`: the empty polls of a block not made yet are in no
// block's trace. With tracing off the spans are no-ops. thread-safe.
//
// Where a block's root starts: at the launch of the first call of its
// trace, if that call was not held (it asked for a block that existed, or
// would have answered empty at once); if it was held, at the moment the
// upstream released the call that brought the block (storesync-released-at,
// clamped into that call's launch and answer; that call's launch if it was
// not held). A held call's root has to go out before its start is known,
// so its trace's first root is never ended and a second one, started at
// the release, takes its IDs (otel.WithIDs): with a provider that does not
// honour them, the root starts at the launch.
type journeys struct {
	tracer trace.Tracer

	mu      sync.Mutex
	calling map[uint64]*attempt // by block: the trace a hedge of its call joins
	open    map[uint64]*journey
	marks   map[uint64]*marks // by block, not yet served
	done    map[uint64]trace.SpanContext
	order   []uint64 // done, oldest first
	noIDs   bool     // the provider ignored otel.WithIDs once: roots stay at the launch
}

type journey struct {
	ctx  context.Context
	span trace.Span
}

// attempt is the trace of one call and of the hedges that joined it.
type attempt struct {
	n        uint64
	root     trace.Span // started at launched
	launched time.Time
	held     bool   // its first call asked to be held
	flying   int    // calls not answered yet
	calls    int    // calls in all
	outcome  string // the last answer's, for a probe
	served   bool
}

// marks are what happened to a block before a call brought it: its root
// shows them as events (at their times, so those before the serving call's
// launch lie before the root's start) and links to the failed calls' traces.
type marks struct {
	events []event
	links  []trace.Link
}

type event struct {
	name  string
	at    time.Time
	attrs []attribute.KeyValue
}

// callTrace is one call's part in the traces, from launch to answer.
type callTrace struct {
	a        *attempt
	launched time.Time
	held     bool
}

// span is the root the call runs under.
func (c *callTrace) span() trace.Span { return c.a.root }

// callEnd is how a call ended, for its trace.
type callEnd struct {
	outcome  string    // as the fetch metric counts it: ok, empty, bad, error, cancelled; timed_out
	served   bool      // it brought a block that is now in the window (ok and still wanted)
	released time.Time // a held call: when the upstream released it, within [launch, at]; zero: not held
	at       time.Time // the answer
}

func newJourneys(tp trace.TracerProvider) *journeys {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &journeys{tracer: tp.Tracer("storesync/actors"), calling: map[uint64]*attempt{}, open: map[uint64]*journey{},
		marks: map[uint64]*marks{}, done: map[uint64]trace.SpanContext{}}
}

// launch starts the trace of a call for block n at now: a trace of its
// own, or for a hedge the trace of the call it hedges while that one is in
// flight (so a hedged block's trace shows both calls, the stalled one and
// the one that won, and its root counts the stall).
func (j *journeys) launch(n uint64, hedge, held bool, now time.Time) *callTrace {
	j.mu.Lock()
	defer j.mu.Unlock()
	a := j.calling[n]
	if !hedge || a == nil || a.served || a.flying == 0 {
		_, root := j.tracer.Start(context.Background(), "block", trace.WithNewRoot(), trace.WithTimestamp(now),
			trace.WithAttributes(attribute.Int64("block.number", int64(n))))
		a = &attempt{n: n, root: root, launched: now, held: held}
		j.calling[n] = a
	}
	a.flying++
	a.calls++
	return &callTrace{a: a, launched: now, held: held}
}

// answered ends a call's part: a call that brought its block makes its
// trace the block's journey; the last call of a trace that brought none
// ends it as a probe.
func (j *journeys) answered(c *callTrace, e callEnd) {
	if c == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	a := c.a
	a.flying--
	switch {
	case a.served:
	case e.served:
		a.served = true
		j.openJourney(a, c, e)
	default:
		a.outcome = e.outcome
	}
	if a.flying > 0 {
		return
	}
	if j.calling[a.n] == a {
		delete(j.calling, a.n)
	}
	if a.served {
		return
	}
	a.root.SetName("probe")
	a.root.SetAttributes(attribute.String("probe.outcome", a.outcome), attribute.Int("fetch.calls", a.calls))
	switch a.outcome {
	case "empty", "cancelled":
	default:
		a.root.SetStatus(codes.Error, a.outcome)
		if sc := a.root.SpanContext(); sc.IsSampled() && a.n > j.highestDone() {
			m := j.marksOf(a.n)
			if len(m.links) < keepMarks {
				m.links = append(m.links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("probe.outcome", a.outcome)}})
			}
		}
	}
	a.root.End(trace.WithTimestamp(e.at))
}

// openJourney makes a's trace block a.n's journey, c having brought it.
// CONTRACT: j.mu must be locked.
func (j *journeys) openJourney(a *attempt, c *callTrace, e callEnd) {
	start := a.launched
	if a.held {
		start = c.launched
		if c.held && !e.released.IsZero() {
			start = e.released
		}
	}
	root := a.root
	if !start.Equal(a.launched) && root.IsRecording() && !j.noIDs {
		sc := root.SpanContext()
		_, late := j.tracer.Start(otel.WithIDs(context.Background(), sc), "block", trace.WithNewRoot(), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.Int64("block.number", int64(a.n))))
		if got := late.SpanContext(); got.TraceID() == sc.TraceID() && got.SpanID() == sc.SpanID() && got.IsSampled() == sc.IsSampled() {
			root = late // the first root is dropped, never ended
		} else {
			j.noIDs = true // late is dropped, never ended
		}
	}
	root.SetAttributes(attribute.Int("fetch.calls", a.calls), attribute.Bool("fetch.held", a.held),
		attribute.Float64("fetch.wait_ms", float64(start.Sub(a.launched).Microseconds())/1000))
	if old := j.open[a.n]; old != nil {
		// Fetched before and not committed (rejected, or lost with the
		// Applier's state): that journey ends here, and this one goes on.
		old.span.AddEvent("refetched")
		old.span.End()
	}
	if m := j.marks[a.n]; m != nil {
		for _, ev := range m.events {
			root.AddEvent(ev.name, trace.WithTimestamp(ev.at), trace.WithAttributes(ev.attrs...))
		}
		for _, l := range m.links {
			root.AddLink(l)
		}
		delete(j.marks, a.n)
	}
	j.open[a.n] = &journey{ctx: trace.ContextWithSpan(context.Background(), root), span: root}
}

// marksOf is block n's marks, made if needed.
// CONTRACT: j.mu must be locked.
func (j *journeys) marksOf(n uint64) *marks {
	m := j.marks[n]
	if m == nil {
		m = &marks{}
		j.marks[n] = m
	}
	return m
}

// highestDone is the highest block committed (0: none yet).
// CONTRACT: j.mu must be locked.
func (j *journeys) highestDone() uint64 {
	if len(j.order) == 0 {
		return 0
	}
	return j.order[len(j.order)-1]
}

// context returns the context of block n's journey: what its Deliver
// carries to the Applier. A block delivered with no journey (its trace
// was ended from under it) starts one now.
func (j *journeys) context(n uint64, now time.Time) context.Context {
	j.mu.Lock()
	defer j.mu.Unlock()
	if jo, ok := j.open[n]; ok {
		return jo.ctx
	}
	ctx, span := j.tracer.Start(context.Background(), "block", trace.WithNewRoot(), trace.WithTimestamp(now),
		trace.WithAttributes(attribute.Int64("block.number", int64(n))))
	j.open[n] = &journey{ctx: ctx, span: span}
	return ctx
}

// event records a retry, failover, hedge or rejection of block n at at: on
// its root if a call brought it already, else kept for the root of the
// call that will.
func (j *journeys) event(n uint64, at time.Time, name string, attrs ...attribute.KeyValue) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if jo := j.open[n]; jo != nil {
		jo.span.AddEvent(name, trace.WithTimestamp(at), trace.WithAttributes(attrs...))
		return
	}
	if n <= j.highestDone() {
		return
	}
	if m := j.marksOf(n); len(m.events) < keepMarks {
		m.events = append(m.events, event{name: name, at: at, attrs: attrs})
	}
}

// end ends block n's journey at its commit.
func (j *journeys) end(n uint64, attrs ...attribute.KeyValue) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for m := range j.marks {
		if m <= n {
			delete(j.marks, m)
		}
	}
	jo := j.open[n]
	if jo == nil {
		return
	}
	delete(j.open, n)
	jo.span.SetAttributes(attrs...)
	jo.span.End()
	j.done[n] = jo.span.SpanContext()
	j.order = append(j.order, n)
	if len(j.order) > keepLinks {
		delete(j.done, j.order[0])
		j.order = j.order[1:]
	}
	// Journeys of blocks below a committed one can no longer end: their
	// blocks were committed by an earlier incarnation or another path.
	for m, o := range j.open {
		if m < n {
			o.span.End()
			delete(j.open, m)
		}
	}
}

// link is the root span context of committed block n, if still known.
func (j *journeys) link(n uint64) (trace.SpanContext, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	sc, ok := j.done[n]
	return sc, ok
}

// groupSpans records the apply spans of a group's blocks (parents: each
// block's trace) from the store's reports, with the times the store
// measured. A block alone has its apply span with a child per stage. In a
// group of several, each block's apply span holds its own validate and
// trees and a "commit" child for the group's commit, with its share; the
// group's commit is also a span of its own (its own trace, linked to
// every block's apply span) with a child per medium. A block that was not
// committed (rejected, or the group's write failed) gets an apply span
// with the error.
func (j *journeys) groupSpans(parents []context.Context, reps []store.Report, start, end time.Time, err error) {
	k := len(reps)
	if k == 1 {
		j.applySpans(parents[0], reps[0], end)
	} else if k > 1 {
		last := reps[k-1]
		commitStart := last.Start.Add(last.Validate + last.Trees)
		links := make([]trace.Link, 0, k)
		for i, rep := range reps {
			ctx, apply := j.tracer.Start(parents[i], "apply", trace.WithTimestamp(rep.Start),
				trace.WithAttributes(attribute.Int("apply.group", k)))
			t := j.stageSpans(ctx, rep.Start, []stage{{"validate", rep.Validate}, {"trees", rep.Trees}})
			if t.Before(commitStart) {
				t = commitStart
			}
			_, c := j.tracer.Start(ctx, "commit", trace.WithTimestamp(t),
				trace.WithAttributes(attribute.Int("apply.group", k), attribute.Float64("commit.share_ms", float64((rep.BlockFile+rep.SQLite+rep.State).Microseconds())/1000)))
			c.End(trace.WithTimestamp(end))
			apply.End(trace.WithTimestamp(end))
			links = append(links, trace.Link{SpanContext: apply.SpanContext()})
		}
		ctx, commit := j.tracer.Start(context.Background(), "commit", trace.WithNewRoot(), trace.WithTimestamp(commitStart), trace.WithLinks(links...),
			trace.WithAttributes(attribute.Int("apply.group", k), attribute.Int64("block.first", int64(reps[0].Number)), attribute.Int64("block.last", int64(last.Number))))
		kd := time.Duration(k)
		j.stageSpans(ctx, commitStart, []stage{{"blockfile", last.BlockFile * kd}, {"sqlite", last.SQLite * kd}, {"state", last.State * kd}})
		commit.End(trace.WithTimestamp(end))
	}
	if err == nil {
		return
	}
	failed := parents[k:]
	if state.Rejection(err) != nil && len(failed) > 1 {
		failed = failed[:1] // the bad block; the blocks after it were not tried
	}
	for _, p := range failed {
		_, apply := j.tracer.Start(p, "apply", trace.WithTimestamp(start))
		apply.RecordError(err)
		apply.SetStatus(codes.Error, err.Error())
		apply.End(trace.WithTimestamp(end))
	}
}

type stage struct {
	name string
	d    time.Duration
}

// stageSpans records one child span per stage of non-zero length, back to
// back from t, and returns where the last ended.
func (j *journeys) stageSpans(ctx context.Context, t time.Time, stages []stage) time.Time {
	for _, st := range stages {
		if st.d == 0 {
			continue
		}
		_, s := j.tracer.Start(ctx, st.name, trace.WithTimestamp(t))
		t = t.Add(st.d)
		s.End(trace.WithTimestamp(t))
	}
	return t
}

// applySpans records the apply span of a block committed alone and its
// per-medium children from the store's report.
func (j *journeys) applySpans(parent context.Context, rep store.Report, end time.Time) {
	ctx, apply := j.tracer.Start(parent, "apply", trace.WithTimestamp(rep.Start))
	j.stageSpans(ctx, rep.Start, []stage{{"validate", rep.Validate}, {"trees", rep.Trees}, {"blockfile", rep.BlockFile}, {"sqlite", rep.SQLite}, {"state", rep.State}})
	apply.End(trace.WithTimestamp(end))
}
