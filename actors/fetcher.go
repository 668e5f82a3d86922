package actors

import (
	"context"
	"errors"
	"fmt"
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

// stallAfter: deliveries unacknowledged for this long mean a message was
// lost (an actor restarted); the Fetcher then resyncs from the store's tip.
const stallAfter = 10 * time.Second

// fetcher keeps the window of blocks in flight, checks what arrives, and
// delivers it to the Applier in order. The calls run in goroutines it owns
// (one per block in flight, bounded by the window) and report back to it as
// messages, so its state is only ever touched by Receive.
type fetcher struct {
	// immutable after construction
	e     *Engine
	cfg   *Config
	peers *peers

	// owned by the actor, rebuilt at every (re)start from the store
	epoch     uint64 // results of an earlier incarnation's calls are dropped
	window    *Window
	ups       *Upstreams
	callCtx   context.Context
	cancel    context.CancelFunc
	calls     sync.WaitGroup
	wake      *time.Timer
	wakeAt    time.Time
	ready     map[uint64]*fetchResult // fetched, waiting for their turn
	avoid     map[uint64]string       // block -> upstream that served it bad
	reported  map[int]uint64          // UpstreamTip last reported, per upstream
	problems  map[string]string       // last problem logged, per upstream
	lastAck   time.Time
	lastAcked uint64
}

func newFetcher(e *Engine, cfg *Config, p *peers) *fetcher {
	return &fetcher{e: e, cfg: cfg, peers: p}
}

// fetchResult is the outcome of one GetBlockByNumber call, sent by the
// call's goroutine to the fetcher.
type fetchResult struct {
	epoch    uint64
	n        uint64
	upstream int
	block    *block.Block
	size     int
	proof    []byte
	empty    bool  // past the upstream's tip
	bad      error // it served something that fails the cheap checks
	badProof error // the block is fine, the proof with it is not
	err      error // the call failed
	timedOut bool  // ... by running out of FetchTimeout
	at       time.Time
	took     time.Duration
}

// wakeUp is sent by the fetcher's timer when a retry or probe falls due.
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
			f.step(ctx)
		}
	case *actor.Restarting, *actor.Stopping:
		f.stop()
	case *actor.Stopped:
	default:
		f.cfg.Hooks.receive(FetcherName, m)
		f.handle(m)
		f.step(ctx)
	}
}

// start rebuilds everything from the store: local state is the cursor.
func (f *fetcher) start(ctx actor.Context) {
	f.epoch = epochCounter.Add(1)
	committed, _ := f.cfg.Store.Tips()
	wc := WindowConfig{MaxBlocks: f.cfg.FetchWindow, MaxBytes: f.cfg.FetchWindowBytes, Credits: f.cfg.Credits,
		PollInterval: f.cfg.PollInterval, RetryInitial: f.cfg.RetryInitial, RetryMax: f.cfg.RetryMax, Seed: f.epoch}
	f.window = NewWindow(wc, committed+1)
	names := make([]string, len(f.cfg.Upstreams))
	for i, u := range f.cfg.Upstreams {
		names[i] = u.Name()
	}
	f.ups = NewUpstreams(names, wc, f.cfg.SuspectFor)
	f.callCtx, f.cancel = context.WithCancel(context.Background())
	f.ready, f.avoid = map[uint64]*fetchResult{}, map[uint64]string{}
	f.reported, f.problems = map[int]uint64{}, map[string]string{}
	f.lastAck, f.lastAcked = time.Now(), committed
	self, epoch, root := ctx.Self(), f.epoch, ctx.ActorSystem().Root
	f.wake = time.AfterFunc(time.Hour, func() { root.Send(self, wakeUp{epoch: epoch}) })
	f.wake.Stop()
	f.wakeAt = time.Time{}
	callCtx := f.callCtx
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
	if f.wake != nil {
		f.wake.Stop()
	}
	f.calls.Wait()
}

func (f *fetcher) handle(msg any) {
	switch m := msg.(type) {
	case *fetchResult:
		if m.epoch == f.epoch {
			f.result(m)
		}
	case wakeUp:
		if m.epoch == f.epoch {
			f.wakeAt = time.Time{}
		}
	case reconnected:
		if m.epoch == f.epoch {
			if f.ups.Reconnected(m.upstream) {
				f.window.RetryNow(time.Now())
				f.e.notes.update(f.ups.Name(m.upstream), func(n *UpstreamNote) { n.BackedOffUntil = time.Time{} })
				f.cfg.Log.Info("upstream connection is back: asking it again now", "upstream", f.ups.Name(m.upstream))
			}
		}
	case *messages.Applied:
		f.window.Acked(m.Tip)
		for n := range f.ready {
			if n <= m.Tip {
				delete(f.ready, n)
			}
		}
		if m.Tip > f.lastAcked {
			f.lastAck, f.lastAcked = time.Now(), m.Tip
		}
	case *messages.Rejected:
		f.e.stats.Rejected.Add(1)
		f.cfg.Metrics.Rejected(string(m.Check))
		f.suspect(m.Upstream, fmt.Sprintf("block %d failed the %s check: %s", m.Number, m.Check, m.Reason), time.Now())
		f.cfg.Log.Warn("block failed validation: not applied, upstream marked suspect, refetching",
			"block", m.Number, "upstream", m.Upstream, "check", string(m.Check), "reason", m.Reason)
		f.resync(m.Number)
		f.avoid[m.Number] = m.Upstream
	case *messages.Resync:
		if m.Next != f.window.Next() {
			f.resync(m.Next)
		}
	}
}

// step does everything that is due: deliver, detect a stall, launch calls,
// arm the timer for the next retry or probe.
func (f *fetcher) step(ctx actor.Context) {
	now := time.Now()
	for _, n := range f.window.Deliverable() {
		r := f.ready[n]
		delete(f.ready, n)
		ctx.Send(f.peers.applier, &messages.Deliver{Block: r.block, Size: r.size, Proof: r.proof,
			Upstream: f.ups.Name(r.upstream), FetchedAt: r.at, Trace: otel.Inject(f.e.journeys.start(n))})
	}
	if f.window.Outstanding() > 0 && now.Sub(f.lastAck) > stallAfter {
		committed, _ := f.cfg.Store.Tips()
		f.cfg.Log.Warn("deliveries unacknowledged; resyncing from the store", "since", f.lastAck, "next", committed+1)
		f.resync(committed + 1)
		f.lastAck = now
	}
	for _, n := range f.window.Launch(now) {
		i, ok := f.ups.Pick(n, now, f.avoid[n])
		switch {
		case ok:
			f.call(ctx, n, i)
		case f.ups.AllLack(n, now):
			f.window.Empty(n, now)
		default:
			f.window.Retry(n, f.ups.NextChance(n, now))
		}
	}
	next, pending := f.window.NextWake()
	if f.window.Outstanding() > 0 {
		if t := f.lastAck.Add(stallAfter); !pending || t.Before(next) {
			next, pending = t, true
		}
	}
	f.cfg.Metrics.Window(f.window.Held())
	f.cfg.Metrics.FetchLimit(f.window.Limit())
	if l := int64(f.window.Limit()); f.e.stats.FetchLimit.Swap(l) > l && l < int64(f.cfg.FetchWindow)/2 {
		// Cut, and by much: the link is slower than the window needs.
		f.cfg.Log.Info("calls in flight cut: fetches were timing out or slow", "limit", l, "window", f.cfg.FetchWindow)
	}
	if pending && (f.wakeAt.IsZero() || next.Before(f.wakeAt)) {
		f.wakeAt = next
		f.wake.Reset(max(time.Until(next), 0))
	}
}

func (f *fetcher) resync(next uint64) {
	f.window.Reset(next)
	f.ready = map[uint64]*fetchResult{}
}

// call fetches block n from upstream i in a goroutine owned by the fetcher.
func (f *fetcher) call(ctx actor.Context, n uint64, i int) {
	self, root, epoch, callCtx := ctx.Self(), ctx.ActorSystem().Root, f.epoch, f.callCtx
	up := f.cfg.Upstreams[i]
	jctx := f.e.journeys.start(n)
	f.calls.Add(1)
	go func() {
		defer f.calls.Done()
		r := f.fetch(trace.ContextWithSpan(callCtx, trace.SpanFromContext(jctx)), up, n)
		r.epoch, r.upstream = epoch, i
		root.Send(self, r)
	}()
}

// fetch makes the call and the cheap checks: decode, number, signature.
// thread-safe: runs in the call's goroutine and touches no fetcher state.
func (f *fetcher) fetch(ctx context.Context, up Upstream, n uint64) *fetchResult {
	r := &fetchResult{n: n}
	start := time.Now()
	tracer := f.e.journeys.tracer
	fctx, fspan := tracer.Start(ctx, "fetch", trace.WithAttributes(attribute.String("upstream", up.Name())))
	cctx, cancel := context.WithTimeout(fctx, f.cfg.FetchTimeout)
	raw, proof, err := up.GetBlock(cctx, n, true)
	r.timedOut = err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	if err != nil {
		fspan.SetStatus(codes.Error, err.Error())
	}
	fspan.End()
	r.at = time.Now()
	r.took = r.at.Sub(start)
	_, vspan := tracer.Start(ctx, "verify")
	defer vspan.End()
	switch {
	case err != nil:
		r.err = err
	case raw == nil:
		r.empty = true
	default:
		r.size = len(raw)
		b, err := block.Decode(raw)
		switch {
		case err != nil:
			r.bad = err
		case b.Header.Number != n:
			r.bad = fmt.Errorf("asked for block %d, got block %d", n, b.Header.Number)
		default:
			if err := b.VerifySignature(f.cfg.producer()); err != nil {
				r.bad = err
			}
		}
		r.block = b
		f.e.stats.FetchedBytes.Add(int64(len(raw)))
		if proof != nil && r.bad == nil {
			// A bad proof is dropped and its upstream blamed; the block
			// itself is fine and goes on (its proof is asked for later).
			if err := f.cfg.Store.Genesis().Verifier().VerifyProof(n, b.Header.Commitment(), proof); err != nil {
				r.badProof = err
			} else {
				r.proof = proof
				f.e.stats.ProofBytes.Add(int64(len(proof)))
			}
		}
	}
	return r
}

// result steps the window and the upstreams with a call's outcome.
func (f *fetcher) result(r *fetchResult) {
	f.ups.Done(r.upstream)
	now := r.at
	name := f.ups.Name(r.upstream)
	m := f.cfg.Metrics
	switch {
	case r.err != nil:
		m.Fetched("error", r.took)
		f.e.stats.FetchErrors.Add(1)
		f.e.journeys.event(r.n, "retry", attribute.String("upstream", name), attribute.String("reason", r.err.Error()))
		until := now.Add(f.ups.Failed(r.upstream, now))
		if r.timedOut {
			f.window.TimedOut(r.n, now)
			// A stalled or trickling answer costs the block a whole
			// FetchTimeout; the backoff alone ends at the upstream's next
			// good answer, so an upstream that stalls only some blocks
			// would keep being asked first.
			f.suspect(name, fmt.Sprintf("block %d timed out after %s", r.n, f.cfg.FetchTimeout), now)
			f.problem(name, fmt.Sprintf("GetBlockByNumber failed, marked suspect: timed out after %s: %v", f.cfg.FetchTimeout, r.err), r.n, until)
		} else {
			f.window.Failed(r.n, now)
			f.problem(name, fmt.Sprintf("GetBlockByNumber failed: %v", r.err), r.n, until)
		}
	case r.bad != nil:
		m.Fetched("bad", r.took)
		f.e.journeys.event(r.n, "rejected", attribute.String("upstream", name), attribute.String("reason", r.bad.Error()))
		m.Rejected(badReason(r.bad))
		f.e.stats.Rejected.Add(1)
		f.problem(name, fmt.Sprintf("served a bad block, marked suspect: %v", r.bad), r.n, time.Time{})
		f.suspect(name, fmt.Sprintf("bad block %d: %v", r.n, r.bad), now)
		f.avoid[r.n] = name
		f.window.Retry(r.n, now)
	case r.empty:
		m.Fetched("empty", r.took)
		f.recovered(name)
		f.ups.Lacks(r.upstream, r.n, now)
		if f.ups.AllLack(r.n, now) {
			f.window.Empty(r.n, now)
		} else {
			f.window.Retry(r.n, now)
		}
	default:
		m.Fetched("ok", r.took)
		m.Bytes("useful", r.size+len(r.proof))
		if r.badProof != nil {
			m.Rejected("proof")
			f.e.journeys.event(r.n, "proof rejected", attribute.String("upstream", name), attribute.String("reason", r.badProof.Error()))
			f.problem(name, fmt.Sprintf("served a bad proof with block %d, marked suspect: %v", r.n, r.badProof), r.n, time.Time{})
			f.suspect(name, fmt.Sprintf("bad proof of block %d: %v", r.n, r.badProof), now)
		} else {
			f.recovered(name)
		}
		f.ups.Has(r.upstream, r.n)
		if r.took > f.cfg.FetchTimeout/2 {
			f.window.Slow(r.n, now)
		}
		if f.window.Fetched(r.n, r.size) {
			f.ready[r.n] = r
			delete(f.avoid, r.n)
		}
		if tip := f.ups.Tip(r.upstream); tip > f.reported[r.upstream] {
			f.reported[r.upstream] = tip
			f.send(f.peers.supervisor, &messages.UpstreamTip{Upstream: name, Tip: tip})
			m.UpstreamTip(name, tip)
		}
	}
}

// problem logs one line per distinct problem of an upstream, not one per
// retry, and notes it (with the backoff it earned, zero for none) for the
// status page.
func (f *fetcher) problem(upstream, what string, n uint64, backedOffUntil time.Time) {
	f.e.notes.problem(upstream, what, backedOffUntil)
	if f.problems[upstream] != what {
		f.problems[upstream] = what
		f.cfg.Log.Warn("upstream problem", "upstream", upstream, "block", n, "problem", what)
	}
}

func (f *fetcher) recovered(upstream string) {
	if _, ok := f.problems[upstream]; ok {
		delete(f.problems, upstream)
		f.e.notes.recovered(upstream)
		f.cfg.Log.Info("upstream recovered", "upstream", upstream)
	}
}

// suspect has the upstream asked last for SuspectFor, for why.
func (f *fetcher) suspect(upstream, why string, now time.Time) {
	f.ups.Suspect(upstream, now)
	f.e.notes.suspect(upstream, why, now.Add(f.cfg.SuspectFor))
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

func (f *fetcher) send(pid *actor.PID, msg any) { f.e.system.Root.Send(pid, msg) }
