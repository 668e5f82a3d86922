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

// applier applies delivered blocks one at a time with the store's
// ApplyBlock, the primary's own code path. A block that fails validation is
// never applied: the Fetcher hears of it and refetches. An I/O failure is
// retried after a backoff; the block stays where it is. A disk refusing
// writes (full, read-only) is no fault of the block or its upstream: the
// engine reports it (StorageFault) until a block commits again.
type applier struct {
	// immutable after construction
	e     *Engine
	cfg   *Config
	peers *peers

	// owned by the actor, rebuilt from the store at every (re)start
	next     uint64 // the block number the store expects
	pending  *messages.Deliver
	attempts int
	dropped  bool // deliveries were dropped while a block was pending
	retry    *time.Timer
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
		a.next = committed + 1
		// Whatever the Fetcher delivered to an earlier incarnation is gone.
		// (At the engine's first start the Fetcher starts from the store.)
		if a.peers.ready.Load() {
			ctx.Send(a.peers.fetcher, &messages.Resync{Next: a.next})
		}
	case *actor.Restarting, *actor.Stopping:
		if a.retry != nil {
			a.retry.Stop()
		}
	case *actor.Stopped:
	case *messages.Deliver:
		a.cfg.Hooks.receive(ApplierName, m)
		n := m.Block.Header.Number
		switch {
		case n < a.next:
			// A duplicate from before a resync: already applied. The ack
			// tells the Fetcher where the store is, so its credits are right.
			ctx.Send(a.peers.fetcher, &messages.Applied{Tip: a.next - 1})
			return
		case a.pending != nil:
			a.dropped = true // redelivered after the pending block is in
			return
		case n > a.next:
			// A gap: something was lost. Ask again from what the store expects.
			ctx.Send(a.peers.fetcher, &messages.Resync{Next: a.next})
			return
		}
		a.apply(ctx, m)
	case retryApply:
		a.cfg.Hooks.receive(ApplierName, m)
		if p := a.pending; p != nil {
			a.pending = nil
			a.apply(ctx, p)
		}
	}
}

func (a *applier) apply(ctx actor.Context, d *messages.Deliver) {
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
		ctx.Send(a.peers.fetcher, &messages.Rejected{Number: n, Upstream: d.Upstream, Check: r.Check, Reason: r.Reason, Trace: d.Trace})
		return
	}
	if err != nil {
		if errors.Is(err, store.ErrClosed) {
			return
		}
		a.attempts++
		delay := Backoff(a.attempts, a.cfg.RetryInitial, a.cfg.RetryMax, nil)
		if reason, ok := store.StorageFault(err); ok {
			if old := a.e.storage.Swap(&reason); old == nil || *old != reason {
				a.cfg.Log.Error("storage refuses writes: applying paused, retrying", "block", n, "reason", reason, "err", err, "delay", delay)
			}
		} else if a.attempts == 1 {
			a.cfg.Log.Error("applying a block failed; retrying", "block", n, "err", err, "delay", delay)
		}
		a.pending = d
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.retry = time.AfterFunc(delay, func() { root.Send(self, retryApply{}) })
		return
	}
	if a.attempts > 0 {
		a.cfg.Log.Info("applying blocks again", "block", n, "after_attempts", a.attempts)
		a.attempts = 0
	}
	if a.e.storage.Load() != nil {
		a.e.storage.Store(nil)
	}
	a.next = n + 1
	blockTime := time.UnixMilli(int64(d.Block.Header.Timestamp))
	a.e.journeys.end(n, attribute.Int("block.bytes", d.Size), attribute.Int("block.transactions", len(d.Block.Body.Transactions)),
		attribute.String("upstream", d.Upstream), attribute.Float64("sync_latency_ms", float64(time.Since(blockTime).Microseconds())/1000))
	_, proven := a.cfg.Store.Tips()
	a.cfg.Metrics.Tips(n, proven)
	a.cfg.Metrics.Applied(rep.Validate, rep.Trees, rep.BlockFile, rep.SQLite, time.UnixMilli(int64(d.Block.Header.Timestamp)))
	// The proof first: the ProofTracker then never asks for a proof that
	// is already on its way.
	if d.Proof != nil {
		ctx.Send(a.peers.proofTracker, &messages.ProofArrived{Number: n, Proof: d.Proof, Upstream: d.Upstream, Trace: d.Trace})
	}
	applied := &messages.Applied{Tip: n, Block: d.Block, Upstream: d.Upstream, Report: rep, Trace: d.Trace}
	ctx.Send(a.peers.fetcher, applied)
	ctx.Send(a.peers.proofTracker, applied)
	ctx.Send(a.peers.supervisor, applied)
	if a.dropped {
		a.dropped = false
		ctx.Send(a.peers.fetcher, &messages.Resync{Next: a.next})
	}
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
