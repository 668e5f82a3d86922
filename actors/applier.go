package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"storesync/block"
	"storesync/messages"
	"storesync/otel"
	"storesync/state"
	"storesync/store"
)

// applier is the shell of the ApplyCore: it applies delivered blocks in
// groups with the store's ApplyBlocks, the primary's own checks for each
// block and one commit for the group (caught up, a group is one block). A
// block that fails validation is never applied: the blocks before it in
// its group commit, and the Fetcher hears of it and refetches from it. An
// I/O failure is retried after a backoff; the group stays where it is. A
// disk refusing writes (full, read-only) is no fault of the blocks or
// their upstream: the engine reports it (StorageFault) until a group
// commits again. Nothing of a group (tips, metrics, Applied messages) is
// reported before its commit returns.
type applier struct {
	// immutable after construction
	e     *Engine
	cfg   *Config
	peers *peers

	// owned by the actor, rebuilt from the store at every (re)start
	core      *ApplyCore
	retry     *selfTimer
	pending   map[uint64]*pendingGroup // by the core's group id
	inStore   int                      // groups staging or committing
	busySince time.Time                // the last change of inStore
}

// retryApply is sent by the applier's timer to try the pending group again.
type retryApply struct{}

// drainApply is what the applier sends itself when the ApplyCore asks for a
// drain: it comes after the deliveries already in the mailbox.
type drainApply struct{}

func newApplier(e *Engine, cfg *Config, p *peers) *applier {
	return &applier{e: e, cfg: cfg, peers: p}
}

// Receive implements actor.Actor.
func (a *applier) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.cfg.Hooks.started(ApplierName)
		// The commits an earlier incarnation started end first: the
		// tips then say where the store is.
		a.cfg.Store.WaitCommits()
		committed, _ := a.cfg.Store.Tips()
		a.core = NewApplyCore(a.cfg.ApplyConfig(), committed+1)
		a.pending = map[uint64]*pendingGroup{}
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
		a.step(ctx, Delivered{N: m.Block.Header.Number, Bytes: m.Size, Block: m})
	case drainApply:
		a.cfg.Hooks.receive(ApplierName, m)
		a.step(ctx, DrainDue{})
	case retryApply:
		a.cfg.Hooks.receive(ApplierName, m)
		a.step(ctx, RetryDue{})
	case commitDone:
		a.cfg.Hooks.receive(ApplierName, m)
		if m.core == a.core { // else staged by an earlier incarnation
			a.commitEnded(ctx, m)
		}
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
		if r.Drain {
			ctx.Send(ctx.Self(), drainApply{})
		}
		if r.Count == 0 {
			return
		}
		group := a.core.Group()
		ds := make([]*messages.Deliver, len(group))
		for i, g := range group {
			ds[i] = g.(*messages.Deliver)
		}
		start := time.Now()
		out, staged, barrier := a.stage(ctx, r.ID, ds)
		if out == ApplyClosed {
			return
		}
		a.core.Step(time.Now(), Staged{Outcome: out, Accepted: staged, Took: time.Since(start), Barrier: barrier})
	}
}

// pendingGroup is a group staged whose commit is under way.
type pendingGroup struct {
	group   []*messages.Deliver
	parents []context.Context // each block's journey
	taken   time.Time         // when its stage began
}

// commitDone is what a group's commit, in its own goroutine, sends back.
type commitDone struct {
	core *ApplyCore // of the incarnation that staged it
	id   uint64
	reps []store.Report
	err  error
	took time.Duration
	end  time.Time
}

// stage stages one group and starts its commit in the background; it
// returns how the stage ended, how many of the group's blocks it staged and
// whether the next group must wait for this one's commit.
func (a *applier) stage(ctx actor.Context, id uint64, group []*messages.Deliver) (ApplyOutcome, int, bool) {
	taken := time.Now()
	blocks := make([]*block.Block, len(group))
	parents := make([]context.Context, len(group))
	for i, d := range group {
		blocks[i] = d.Block
		parents[i] = otel.Extract(d.Trace)
		_, wait := a.e.journeys.tracer.Start(parents[i], "queue.wait", trace.WithTimestamp(d.FetchedAt))
		wait.End(trace.WithTimestamp(taken))
	}
	a.busy(1, taken)
	g, err := a.cfg.Store.Stage(context.Background(), blocks)
	staged, barrier := 0, false
	if g != nil {
		// Committed in the background: the next group is staged meanwhile,
		// on the state this one leaves, and nothing of this one is
		// reported before its commit returns.
		staged, barrier = g.Blocks(), g.WritesTrees()
		a.pending[id] = &pendingGroup{group: group[:staged], parents: parents[:staged], taken: taken}
		a.busy(1, taken)
		self, root, core, st := ctx.Self(), ctx.ActorSystem().Root, a.core, a.cfg.Store
		go func() {
			start := time.Now()
			reps, err := st.Commit(context.Background(), g)
			end := time.Now()
			root.Send(self, commitDone{core: core, id: id, reps: reps, err: err, took: end.Sub(start), end: end})
		}()
	}
	end := time.Now()
	a.busy(-1, end)
	if err != nil {
		a.e.journeys.groupSpans(parents[staged:], nil, taken, end, err)
	}
	if r := state.Rejection(err); r != nil {
		d := group[staged]
		n := d.Block.Header.Number
		a.e.journeys.event(n, end, "rejected", attribute.String("upstream", d.Upstream), attribute.String("check", string(r.Check)), attribute.String("reason", r.Reason))
		ctx.Send(a.peers.fetcher, &messages.Rejected{Number: n, Upstream: d.Upstream, Check: r.Check, Reason: r.Reason})
		return ApplyRejected, staged, barrier
	}
	if err != nil {
		return a.failed(err, group), 0, false
	}
	return ApplyOK, staged, barrier
}

// commitEnded reports the commit of a group: each block, or the failure.
func (a *applier) commitEnded(ctx actor.Context, m commitDone) {
	p := a.pending[m.id]
	delete(a.pending, m.id)
	if p == nil {
		return
	}
	a.busy(-1, m.end)
	a.e.journeys.groupSpans(p.parents, m.reps, p.taken, m.end, m.err)
	out := ApplyOK
	if m.err != nil {
		out = a.failed(m.err, p.group)
	} else {
		for i, rep := range m.reps {
			a.committed(ctx, p.group[i], rep)
		}
		a.cfg.Metrics.Group(len(m.reps))
		a.e.stats.GroupSizes[min(len(m.reps), MaxGroupStat)].Add(1)
		if a.e.storage.Load() != nil {
			a.e.storage.Store(nil)
		}
	}
	a.step(ctx, Applied{ID: m.id, Outcome: out, Took: m.took})
}

// failed classifies a stage or commit that failed, and says so once.
func (a *applier) failed(err error, group []*messages.Deliver) ApplyOutcome {
	switch {
	case errors.Is(err, store.ErrClosed):
		return ApplyClosed
	case errors.Is(err, store.ErrStaleGroup):
		return ApplyStale
	}
	n := group[0].Block.Header.Number
	if reason, ok := store.StorageFault(err); ok {
		if old := a.e.storage.Swap(&reason); old == nil || *old != reason {
			a.cfg.Log.Error("storage refuses writes: applying paused, retrying", "block", n, "blocks", len(group), "reason", reason, "err", err)
		}
	} else if a.core.Attempts() == 0 {
		a.cfg.Log.Error("applying blocks failed; retrying", "block", n, "blocks", len(group), "err", err)
	}
	return ApplyFailed
}

// busy counts the groups in the store (staging or committing) and adds the
// time any was to Stats.Applying, at each change (a catch-up may keep one
// there from start to end).
func (a *applier) busy(delta int, now time.Time) {
	if a.inStore > 0 {
		a.e.stats.Applying.Add(int64(now.Sub(a.busySince)))
	}
	a.busySince = now
	a.inStore += delta
}

// committed reports one block of a group that committed: its journey's
// end, the metrics, its proof and the Applied messages.
func (a *applier) committed(ctx actor.Context, d *messages.Deliver, rep store.Report) {
	n := d.Block.Header.Number
	blockTime := time.UnixMilli(int64(d.Block.Header.Timestamp))
	a.e.journeys.end(n, attribute.Int("block.bytes", d.Size), attribute.Int("block.transactions", len(d.Block.Body.Transactions)),
		attribute.String("upstream", d.Upstream), attribute.Float64("sync_latency_ms", float64(time.Since(blockTime).Microseconds())/1000),
		attribute.Int("apply.group", rep.Group))
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
