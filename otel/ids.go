package otel

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// A span's start is fixed when it starts, but the trace of a call has to
// exist from the call's launch: its context goes out with the call, so that
// the upstream's server span joins it. A block's root span must
// nevertheless start when the upstream released a held call, which is known
// only from the answer. So the root that goes out with the call is never
// ended (never exported), and a second root, started with WithIDs at the
// release instant, takes its trace and span IDs: every span made under the
// first, the upstream's included, is a child of the second.

type presetKey struct{}

// WithIDs returns ctx asking that a span started with it as a new root
// (trace.WithNewRoot) take sc's trace and span IDs. Only a provider that
// uses NewIDGenerator honours it; callers check the IDs they got.
func WithIDs(ctx context.Context, sc trace.SpanContext) context.Context {
	return context.WithValue(ctx, presetKey{}, sc)
}

// NewIDGenerator returns the ID generator SetupTracing installs: random
// IDs, or those WithIDs asked for. A test that builds its own provider
// installs it too (sdktrace.WithIDGenerator). thread-safe.
func NewIDGenerator() sdktrace.IDGenerator { return idGenerator{} }

type idGenerator struct{}

// NewIDs implements sdktrace.IDGenerator; the SDK calls it for roots only.
func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if sc, ok := ctx.Value(presetKey{}).(trace.SpanContext); ok && sc.IsValid() {
		return sc.TraceID(), sc.SpanID()
	}
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, newSpanID()
}

// NewSpanID implements sdktrace.IDGenerator. A preset never applies to a
// child: the context of a root started with one is passed on to its
// children.
func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}
