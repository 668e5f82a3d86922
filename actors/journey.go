package actors

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

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

// applySpans records the apply span of a block and its per-medium children
// from the store's report, with the times the store measured.
func (j *journeys) applySpans(parent context.Context, rep store.Report, end time.Time, err error) {
	ctx, apply := j.tracer.Start(parent, "apply", trace.WithTimestamp(rep.Start))
	t := rep.Start
	for _, st := range []struct {
		name string
		d    time.Duration
	}{{"validate", rep.Validate}, {"trees", rep.Trees}, {"blockfile", rep.BlockFile}, {"sqlite", rep.SQLite}, {"state", rep.State}} {
		if st.d == 0 {
			continue
		}
		_, s := j.tracer.Start(ctx, st.name, trace.WithTimestamp(t))
		t = t.Add(st.d)
		s.End(trace.WithTimestamp(t))
	}
	if err != nil {
		apply.RecordError(err)
		apply.SetStatus(codes.Error, err.Error())
	}
	apply.End(trace.WithTimestamp(end))
}
