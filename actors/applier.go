package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"storesync/messages"
	"storesync/otel"
	"storesync/state"
	"storesync/store"
)

// applier is the shell of the ApplyCore: it applies delivered blocks one at
// a time with the store's ApplyBlock, the primary's own code path. A block
// that fails validation is never applied: the Fetcher hears of it and
// refetches. An I/O failure is retried after a backoff; the block stays
// where it is. A disk refusing writes (full, read-only) is no fault of the
// block or its upstream: the engine reports it (StorageFault) until a
// block commits again.
type applier struct {
	// immutable after construction
	e     *Engine
	cfg   *Config
	peers *peers

	// owned by the actor, rebuilt from the store at every (re)start
	core  *ApplyCore
	retry *selfTimer
}

// retryApply is sent by the applier's timer to try the pending block again.
type retryApply struct{}

func newApplier(e *Engine, cfg *Config, p *peers) *applier {
	return &applier{e: e, cfg: cfg, peers: p}
}

// Receive implements actor.Actor.
func (a *applier) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.cfg.Hooks.started(ApplierName)
		committed, _ := a.cfg.Store.Tips()
		a.core = NewApplyCore(a.cfg.ApplyConfig(), committed+1)
		a.retry = newSelfTimer(ctx, retryApply{})
		// Whatever the Fetcher delivered to an earlier incarnation is gone.
		// (At the engine's first start the Fetcher starts from the store.)
		if a.peers.ready.Load() {
			ctx.Send(a.peers.fetcher, &messages.Resync{Next: a.core.Next()})
		}
	case *actor.Restarting, *actor.Stopping:
		a.retry.stop()
	case *actor.Stopped:
	case *messages.Deliver:
		a.cfg.Hooks.receive(ApplierName, m)
		a.step(ctx, Delivered{N: m.Block.Header.Number, Block: m})
	case retryApply:
		a.cfg.Hooks.receive(ApplierName, m)
		a.step(ctx, RetryDue{})
	}
}

func (a *applier) step(ctx actor.Context, ev any) {
	a.core.Step(time.Now(), ev)
	for {
		r := a.core.Ready()
		if r.Acked > 0 {
			ctx.Send(a.peers.fetcher, &messages.Applied{Tip: r.Acked})
		}
		if r.Resync > 0 {
			ctx.Send(a.peers.fetcher, &messages.Resync{Next: r.Resync})
		}
		if r.Retried {
			a.retry.at(r.RetryAt)
		}
		if r.Resumed > 0 {
			a.cfg.Log.Info("applying blocks again", "after_attempts", r.Resumed)
		}
		d, _ := r.Apply.(*messages.Deliver)
		if d == nil {
			return
		}
		out := a.apply(ctx, d)
		if out == ApplyClosed {
			return
		}
		a.core.Step(time.Now(), Applied{N: d.Block.Header.Number, Outcome: out, Block: d})
	}
}

// apply applies one block and sends what follows from it.
func (a *applier) apply(ctx actor.Context, d *messages.Deliver) ApplyOutcome {
	n := d.Block.Header.Number
	parent := otel.Extract(d.Trace)
	taken := time.Now()
	_, wait := a.e.journeys.tracer.Start(parent, "queue.wait", trace.WithTimestamp(d.FetchedAt))
	wait.End(trace.WithTimestamp(taken))
	rep, err := a.cfg.Store.ApplyBlock(context.Background(), d.Block)
	a.e.stats.Applying.Add(int64(time.Since(taken)))
	if rep.Start.IsZero() {
		rep.Start = taken
	}
	a.e.journeys.applySpans(parent, rep, time.Now(), err)
	if r := state.Rejection(err); r != nil {
		a.e.journeys.event(n, "rejected", attribute.String("upstream", d.Upstream), attribute.String("check", string(r.Check)), attribute.String("reason", r.Reason))
		ctx.Send(a.peers.fetcher, &messages.Rejected{Number: n, Upstream: d.Upstream, Check: r.Check, Reason: r.Reason})
		return ApplyRejected
	}
	if err != nil {
		if errors.Is(err, store.ErrClosed) {
			return ApplyClosed
		}
		if reason, ok := store.StorageFault(err); ok {
			if old := a.e.storage.Swap(&reason); old == nil || *old != reason {
				a.cfg.Log.Error("storage refuses writes: applying paused, retrying", "block", n, "reason", reason, "err", err)
			}
		} else if a.core.Attempts() == 0 {
			a.cfg.Log.Error("applying a block failed; retrying", "block", n, "err", err)
		}
		return ApplyFailed
	}
	if a.e.storage.Load() != nil {
		a.e.storage.Store(nil)
	}
	blockTime := time.UnixMilli(int64(d.Block.Header.Timestamp))
	a.e.journeys.end(n, attribute.Int("block.bytes", d.Size), attribute.Int("block.transactions", len(d.Block.Body.Transactions)),
		attribute.String("upstream", d.Upstream), attribute.Float64("sync_latency_ms", float64(time.Since(blockTime).Microseconds())/1000))
	_, proven := a.cfg.Store.Tips()
	a.cfg.Metrics.Tips(n, proven)
	a.cfg.Metrics.Applied(rep.Validate, rep.Trees, rep.BlockFile, rep.SQLite, rep.State, blockTime)
	// The proof first: the ProofTracker then never asks for a proof that
	// is already on its way.
	if d.Proof != nil {
		ctx.Send(a.peers.proofTracker, &messages.ProofArrived{Number: n, Proof: d.Proof})
	}
	applied := &messages.Applied{Tip: n, Block: d.Block}
	ctx.Send(a.peers.fetcher, applied)
	ctx.Send(a.peers.proofTracker, applied)
	return ApplyOK
}

// StorageFault says why the store refuses writes ("no space left on
// device"), while it does: set by the Applier's failed apply, cleared by its
// next commit. "" when writes work. thread-safe.
func (e *Engine) StorageFault() string {
	if r := e.storage.Load(); r != nil {
		return *r
	}
	return ""
}
