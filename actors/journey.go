package actors

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"storesync/state"
	"storesync/store"
)

// keepLinks is how many committed blocks keep their root span context, so
// that their proofs, applied later, can link to them.
const keepLinks = 4096

// journeys holds each block's root span from the moment it is first
// scheduled for fetching until it is committed: one trace per block, whose
// stages (fetch, verify, queue.wait, apply and its media) are children of
// the root whichever actor runs them. With tracing off the spans are no-ops.
// thread-safe.
type journeys struct {
	tracer trace.Tracer

	mu    sync.Mutex
	open  map[uint64]*journey
	done  map[uint64]trace.SpanContext
	order []uint64 // done, oldest first
}

type journey struct {
	ctx  context.Context
	span trace.Span
}

func newJourneys(tp trace.TracerProvider) *journeys {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &journeys{tracer: tp.Tracer("storesync/actors"), open: map[uint64]*journey{}, done: map[uint64]trace.SpanContext{}}
}

// start returns the context of block n's journey, starting it if needed.
func (j *journeys) start(n uint64) context.Context {
	j.mu.Lock()
	defer j.mu.Unlock()
	if jo, ok := j.open[n]; ok {
		return jo.ctx
	}
	ctx, span := j.tracer.Start(context.Background(), "block", trace.WithNewRoot(),
		trace.WithAttributes(attribute.Int64("block.number", int64(n))))
	j.open[n] = &journey{ctx: ctx, span: span}
	return ctx
}

// event records a retry, failover or rejection on block n's root span.
func (j *journeys) event(n uint64, name string, attrs ...attribute.KeyValue) {
	j.mu.Lock()
	jo := j.open[n]
	j.mu.Unlock()
	if jo != nil {
		jo.span.AddEvent(name, trace.WithAttributes(attrs...))
	}
}

// end ends block n's journey at its commit.
func (j *journeys) end(n uint64, attrs ...attribute.KeyValue) {
	j.mu.Lock()
	defer j.mu.Unlock()
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
