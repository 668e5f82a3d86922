package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"storesync/block"
	"storesync/messages"
	"storesync/otel"
)

// fetcher is the shell of the FetchCore: it turns messages into the core's
// events and carries out its effects. The calls run in goroutines it owns
// (one per call, bounded by the window and the upstreams' limits) and
// report back to it as messages, so the core is only ever touched by
// Receive.
type fetcher struct {
	// immutable after construction
	e     *Engine
	cfg   *Config
	peers *peers

	// owned by the actor, rebuilt at every (re)start from the store
	epoch   uint64 // results of an earlier incarnation's calls are dropped
	core    *FetchCore
	callCtx context.Context
	cancel  context.CancelFunc
	calls   sync.WaitGroup
	inCall  map[uint64]context.CancelFunc // calls in flight, by id
	timer   *selfTimer
	notesV  uint64 // the Book's version last published
	limit   int    // the calls allowed in flight last reported
}

func newFetcher(e *Engine, cfg *Config, p *peers) *fetcher {
	return &fetcher{e: e, cfg: cfg, peers: p}
}

// fetchResult is the outcome of one call, sent by the call's goroutine.
type fetchResult struct {
	epoch   uint64
	done    CallDone
	proof   []byte // with a fetched block
	at      time.Time
	badKind string // the cheap check a Bad answer failed
	// trace is the call's part in the traces (nil: a proof ask), released
	// when the upstream released it if it held it (zero: it did not).
	trace    *callTrace
	released time.Time
}

// fetched is a block the core holds until it is delivered (CallDone.Payload).
type fetched struct {
	block *block.Block
	size  int
	proof []byte
	at    time.Time
}

// wakeUp is sent by the fetcher's timer when a retry, probe or hedge falls due.
type wakeUp struct{ epoch uint64 }

// reconnected is sent by an upstream's watcher when its connection is back.
type reconnected struct {
	epoch    uint64
	upstream int
}

var epochCounter atomic.Uint64

// Receive implements actor.Actor.
func (f *fetcher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		f.cfg.Hooks.started(FetcherName)
		f.start(ctx)
		if f.peers.ready.Load() { // a restart; the first start waits for begin
			ctx.Send(f.peers.proofTracker, &messages.AsksLost{})
			f.step(ctx, Tick{})
		}
	case *actor.Restarting, *actor.Stopping:
		f.stop()
	case *actor.Stopped:
	default:
		f.cfg.Hooks.receive(FetcherName, m)
		if ev := f.event(m); ev != nil {
			f.step(ctx, ev)
		}
	}
}

// start rebuilds everything from the store: local state is the cursor.
func (f *fetcher) start(ctx actor.Context) {
	f.epoch = epochCounter.Add(1)
	committed, _ := f.cfg.Store.Tips()
	names := make([]string, len(f.cfg.Upstreams))
	for i, u := range f.cfg.Upstreams {
		names[i] = u.Name()
	}
	f.core = NewFetchCore(f.cfg.FetchConfig(names, f.epoch), committed+1, time.Now())
	f.callCtx, f.cancel = context.WithCancel(context.Background())
	f.inCall = map[uint64]context.CancelFunc{}
	f.timer = newSelfTimer(ctx, wakeUp{epoch: f.epoch})
	self, epoch, root, callCtx := ctx.Self(), f.epoch, ctx.ActorSystem().Root, f.callCtx
	for i, u := range f.cfg.Upstreams {
		if r, ok := u.(Reconnecting); ok {
			f.calls.Add(1)
			go func() {
				defer f.calls.Done()
				for r.Reconnected(callCtx) {
					root.Send(self, reconnected{epoch: epoch, upstream: i})
				}
			}()
		}
	}
}

// stop cancels the calls in flight and waits for their goroutines.
func (f *fetcher) stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.timer.stop()
	f.calls.Wait()
}

// event turns a message into the core's event (nil: nothing to step).
func (f *fetcher) event(msg any) any {
	switch m := msg.(type) {
	case begin:
		return Tick{}
	case *fetchResult:
		if m.epoch != f.epoch {
			f.e.journeys.answered(m.trace, callEnd{outcome: "cancelled", at: m.at})
			return nil
		}
		delete(f.inCall, m.done.ID)
		ev, kind := f.account(m)
		// Before the step: the block it brought may be delivered by it,
		// and its Deliver carries the block's journey.
		f.e.journeys.answered(m.trace, callEnd{outcome: kind, served: kind == "ok" && f.core.Wanted(m.done.ID),
			released: m.released, at: m.at})
		return ev
	case wakeUp:
		if m.epoch == f.epoch {
			return Tick{}
		}
	case reconnected:
		if m.epoch == f.epoch {
			return LinkBack{Upstream: m.upstream}
		}
	case *messages.Applied:
		return BlockAcked{Tip: m.Tip}
	case *messages.Rejected:
		f.e.stats.Rejected.Add(1)
		f.cfg.Metrics.Rejected(string(m.Check))
		f.cfg.Log.Warn("block failed validation: not applied, upstream marked suspect, refetching",
			"block", m.Number, "upstream", m.Upstream, "check", string(m.Check), "reason", m.Reason)
		return BlockRejected{N: m.Number, Upstream: f.core.Book().Index(m.Upstream),
			Why: fmt.Sprintf("block %d failed the %s check: %s", m.Number, m.Check, m.Reason)}
	case *messages.Resync:
		return ResyncFrom{Next: m.Next}
	case *messages.AskProofs:
		w := ProofWanted{Wants: make([]ProofWant, len(m.Numbers))}
		for i, n := range m.Numbers {
			w.Wants[i] = ProofWant{N: n, Known: m.Known[i]}
		}
		return w
	case *messages.TipHint:
		if i := f.core.Book().Index(m.Upstream); i >= 0 {
			return TipSeen{Upstream: i, Tip: m.Tip}
		}
	}
	return nil
}

// account counts what a call brought, for metrics and /status, and
// returns it as the core's event, with its outcome as the fetch metric
// counts it (and timed_out apart from error, for its trace).
func (f *fetcher) account(r *fetchResult) (CallDone, string) {
	d := r.done
	m, st := f.cfg.Metrics, &f.e.stats
	wanted := f.core.Wanted(d.ID)
	var kind string
	switch {
	case d.Outcome == Served:
		kind = "ok"
	case d.Outcome == Empty:
		kind = "empty"
	case d.Outcome == Bad:
		kind = "bad"
	case !wanted:
		kind = "cancelled" // a hedge answered first, or the window moved on
	default:
		kind = "error"
	}
	m.Fetched(kind, d.Took)
	st.Calls.Add(1)
	st.FetchedBytes.Add(int64(d.Size + len(r.proof)))
	useful := wanted && !f.core.ProofCall(d.ID) && d.Outcome == Served
	switch {
	case kind == "cancelled":
	case d.Outcome == Failed || d.Outcome == TimedOut:
		st.FetchErrors.Add(1)
	case d.Outcome == Bad:
		st.Rejected.Add(1)
		m.Rejected(r.badKind)
	case d.BadProof != "":
		m.Rejected("proof")
	}
	if d.Proof {
		st.ProofBytes.Add(int64(len(r.proof)))
		m.Bytes("useful", len(r.proof))
	}
	if useful {
		st.UsefulBytes.Add(int64(d.Size + len(r.proof)))
		m.Bytes("useful", d.Size)
	} else if d.Size > 0 {
		st.RedundantBytes.Add(int64(d.Size))
		m.Bytes("redundant", d.Size)
	}
	if d.Proof && !useful {
		st.UsefulBytes.Add(int64(len(r.proof)))
	}
	if kind == "error" && d.Outcome == TimedOut {
		kind = "timed_out"
	}
	return d, kind
}

// step steps the core and carries out its effects.
func (f *fetcher) step(ctx actor.Context, ev any) {
	f.core.Step(time.Now(), ev)
	for {
		r := f.core.Ready()
		f.carryOut(ctx, r)
		if !r.Stalled {
			break
		}
		committed, _ := f.cfg.Store.Tips()
		f.cfg.Log.Warn("deliveries unacknowledged; resyncing from the store", "next", committed+1)
		f.core.Step(time.Now(), ResyncFrom{Next: committed + 1})
	}
}

func (f *fetcher) carryOut(ctx actor.Context, r *FetchReady) {
	for _, id := range r.Cancels {
		if cancel := f.inCall[id]; cancel != nil {
			cancel()
			delete(f.inCall, id)
		}
	}
	for _, c := range r.Calls {
		f.call(ctx, c)
	}
	for _, d := range r.Deliveries {
		b := d.Payload.(*fetched)
		ctx.Send(f.peers.applier, &messages.Deliver{Block: b.block, Size: b.size, Proof: b.proof,
			Upstream: f.core.Book().Name(d.Upstream), FetchedAt: b.at, Trace: otel.Inject(f.e.journeys.context(d.N, time.Now()))})
	}
	for _, a := range r.ProofAnswers {
		ans := &messages.ProofAnswer{Number: a.N, Known: a.Known, BadProof: a.BadProof, Size: a.Size, UpstreamProven: a.UpstreamProven,
			Upstream: f.core.Book().Name(a.Upstream), Lacking: a.Outcome == Empty,
			Failed: a.Outcome == Failed || a.Outcome == TimedOut || a.Outcome == Bad}
		if a.Proof != nil {
			ans.Proof = a.Proof.([]byte)
		}
		ctx.Send(f.peers.proofTracker, ans)
	}
	if r.HoldingChanged {
		ctx.Send(f.peers.proofTracker, &messages.ProofHolding{On: r.Holding})
	}
	for _, t := range r.Tips {
		name := f.core.Book().Name(t.Upstream)
		ctx.Send(f.peers.supervisor, &messages.UpstreamTip{Upstream: name, Tip: t.Tip})
		f.cfg.Metrics.UpstreamTip(name, t.Tip)
	}
	for _, l := range r.Logs {
		f.logLine(l)
	}
	now := time.Now()
	for _, mk := range r.Marks {
		f.e.journeys.event(mk.N, now, mk.What, attribute.String("upstream", f.core.Book().Name(mk.Upstream)), attribute.String("reason", mk.Reason))
	}
	f.timer.at(r.WakeAt)
	b := f.core.Book()
	if v := b.Version(); v != f.notesV {
		f.notesV = v
		f.e.publishNotes(b.Notes(time.Time{}))
	}
	blocks, bytes := f.core.Window().Held()
	f.cfg.Metrics.Window(blocks, bytes)
	if l := min(b.Limit(), f.cfg.FetchWindow); l != f.limit {
		f.limit = l
		f.cfg.Metrics.FetchLimit(l)
		f.e.stats.FetchLimit.Store(int64(l))
	}
}

func (f *fetcher) logLine(l LogLine) {
	attrs := []any{}
	if l.Upstream >= 0 {
		attrs = append(attrs, "upstream", f.core.Book().Name(l.Upstream))
	}
	if l.N > 0 {
		attrs = append(attrs, "block", l.N)
	}
	if l.Detail != "" {
		attrs = append(attrs, "problem", l.Detail)
	}
	level := slog.LevelInfo
	if l.Warn {
		level = slog.LevelWarn
	}
	f.cfg.Log.Log(context.Background(), level, l.Msg, attrs...)
}

// call runs one call in a goroutine owned by the fetcher.
func (f *fetcher) call(ctx actor.Context, c Call) {
	self, root, epoch := ctx.Self(), ctx.ActorSystem().Root, f.epoch
	cctx, cancel := context.WithCancel(f.callCtx)
	f.inCall[c.ID] = cancel
	up := f.cfg.Upstreams[c.Upstream]
	jctx := cctx
	var ct *callTrace
	if !c.Proof {
		// A proof ask's fetch span is a trace of its own; a block's call
		// runs in its own trace, or its hedged call's.
		ct = f.e.journeys.launch(c.N, c.Hedge, c.Hold != "", time.Now())
		jctx = trace.ContextWithSpan(cctx, ct.span())
	}
	f.calls.Add(1)
	go func() {
		defer f.calls.Done()
		defer cancel()
		r := f.fetch(jctx, up, c)
		r.epoch, r.trace = epoch, ct
		root.Send(self, r)
	}()
}

// fetch makes the call and the cheap checks: decode, number, signature, and
// the proof against the block's commitment (for a proof ask: against the
// block committed here, so that a bad proof is blamed on its upstream).
// thread-safe: runs in the call's goroutine and touches no fetcher state.
func (f *fetcher) fetch(ctx context.Context, up Upstream, c Call) *fetchResult {
	r := &fetchResult{done: CallDone{ID: c.ID}}
	d := &r.done
	start := time.Now()
	tracer := f.e.journeys.tracer
	fctx, fspan := tracer.Start(ctx, "fetch", trace.WithAttributes(attribute.String("upstream", up.Name()), attribute.Bool("hedge", c.Hedge),
		attribute.Int64("hold_wait_ms", c.Wait.Milliseconds()), attribute.Int64("hold_grace_ms", c.Grace.Milliseconds())))
	cctx, cancel := context.WithTimeout(fctx, c.Timeout)
	var raw, proof []byte
	var err error
	if h, ok := up.(Holding); ok {
		var a HeldAnswer
		a, err = h.GetBlockHeld(cctx, c.N, true, HoldAsk{Kind: c.Hold, Wait: c.Wait, Grace: c.Grace})
		raw, proof, d.HoldKnown, d.HoldMax, d.UpstreamProven, r.released = a.Block, a.Proof, a.Known, a.HoldMax, a.Proven, a.Released
	} else {
		raw, proof, err = up.GetBlock(cctx, c.N, true)
	}
	timedOut := err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	r.at = time.Now()
	d.Took = r.at.Sub(start)
	if !r.released.IsZero() {
		// The upstream's clock, kept within the call's own span: its skew
		// cannot put the release before the launch or after the answer.
		if r.released.Before(start) {
			r.released = start
		}
		if r.released.After(r.at) {
			r.released = r.at
		}
		_, hold := tracer.Start(fctx, "hold", trace.WithTimestamp(start))
		hold.End(trace.WithTimestamp(r.released))
	}
	// What the answer was, on the fetch span: a block's trace can then be
	// checked to hold no empty answer, and a probe's shows why it is one.
	answer := "block"
	switch {
	case timedOut:
		d.Outcome, d.Problem, answer = TimedOut, err.Error(), "timed_out"
	case err != nil:
		d.Outcome, d.Problem, answer = Failed, err.Error(), "error"
	case raw == nil:
		d.Outcome, answer = Empty, "empty"
	}
	fspan.SetAttributes(attribute.String("fetch.answer", answer))
	if err != nil {
		fspan.SetStatus(codes.Error, err.Error())
	}
	fspan.End(trace.WithTimestamp(r.at))
	if d.Outcome == Served {
		_, vspan := tracer.Start(ctx, "verify", trace.WithTimestamp(r.at))
		defer vspan.End()
		d.Size = len(raw)
		b, err := block.Decode(raw)
		switch {
		case err != nil:
		case b.Header.Number != c.N:
			err = fmt.Errorf("asked for block %d, got block %d", c.N, b.Header.Number)
		default:
			err = b.VerifySignature(f.cfg.producer())
		}
		if err != nil {
			d.Outcome, d.Problem, r.badKind = Bad, err.Error(), badReason(err)
			vspan.SetStatus(codes.Error, err.Error())
			return r
		}
		d.Outcome, d.BlockTime = Served, time.UnixMilli(int64(b.Header.Timestamp))
		commitment := b.Header.Commitment()
		if c.Proof && proof != nil {
			h, herr := f.cfg.Store.Snapshot().Header(ctx, c.N)
			if herr != nil {
				d.Outcome, d.Problem = Failed, herr.Error()
				return r
			}
			commitment = h.Commitment()
		}
		if proof != nil {
			// A bad proof is dropped and its upstream blamed; the block
			// itself is fine and goes on (its proof is asked for later).
			if err := f.cfg.Store.Verifier().VerifyProof(c.N, commitment, proof); err != nil {
				d.BadProof = err.Error()
			} else {
				d.Proof, r.proof = true, proof
			}
		}
		if c.Proof {
			if d.Proof {
				d.Payload = proof
			}
		} else {
			d.Payload = &fetched{block: b, size: len(raw), proof: r.proof, at: r.at}
		}
	}
	return r
}

// badReason names the cheap check a bad answer failed, for the metric.
func badReason(err error) string {
	switch {
	case errors.Is(err, block.ErrDecode):
		return "decode"
	case errors.Is(err, block.ErrSignature):
		return "signature"
	default:
		return "number"
	}
}
