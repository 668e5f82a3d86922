package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"storesync/block"
	"storesync/messages"
	"storesync/store"
)

// maxPendingProofs bounds the proofs held for blocks not yet committed or
// not yet next in order (they arrive with blocks the Fetcher fetched ahead).
const maxPendingProofs = 4096

// proofAsksMax bounds the asks in flight at once; more than one only for
// proofs known to exist (proofTracker.known).
const proofAsksMax = 8

// Proofs are applied in batches (one fsync and one transaction each): a
// batch goes when it reaches proofBatchMax, or when its oldest proof has
// waited proofBatchWait; proofBatchWaitBehind while proofs of blocks not yet
// committed are at hand (catching up: more are about to join the batch).
// In steady state that delays the proven tip by at most proofBatchWait.
// While catching up, 25 ms batches still cost small blocks an extra fsync
// every ten blocks or so, about a tenth of the catch-up speed.
const (
	proofBatchMax        = 256
	proofBatchWait       = 25 * time.Millisecond
	proofBatchWaitBehind = 250 * time.Millisecond
)

// proofTracker advances the proven tip, strictly in order and only over
// blocks committed here. Proofs that came with blocks cost nothing; for a
// block that came without one it asks `proven+1` with include_proof on the
// ProofSchedule, which keeps the block bytes fetched again for nothing small;
// proofs known to exist upstream (see known) are asked at once.
type proofTracker struct {
	// immutable after construction
	e     *Engine
	cfg   *Config
	peers *peers

	// owned by the actor, rebuilt from the store at every (re)start
	epoch     uint64
	proven    uint64
	committed uint64
	pending   map[uint64][]byte
	oldest    time.Time // when the oldest proof not yet applied arrived
	sched     *ProofSchedule
	asking    map[uint64]bool // asks in flight, by block
	// known is the highest block whose proof an upstream has shown (with
	// the block, or asked for). Proofs are made in order, so an upstream
	// that has it has every proof before it: the missing ones below it
	// (dropped from memory by a crash, or fetched before they were made)
	// are asked for at once, a few at a time, not on the schedule.
	known   uint64
	asks    int // rotates asks over the upstreams
	timer   *time.Timer
	timerAt time.Time
	cancel  context.CancelFunc
	callCtx context.Context
	calls   sync.WaitGroup
	lastBad string
	suspect []time.Time // per upstream: until when it is asked last, for serving a bad proof
}

// proofAnswer is the outcome of one ask, sent by its goroutine.
type proofAnswer struct {
	epoch     uint64
	n         uint64
	upstream  int
	proof     []byte
	blockSize int
	err       error // the call failed
	bad       error // the proof failed verification
	at        time.Time
	known     bool // asked as known to exist: what it finds teaches the schedule nothing
}

// proofDue is sent by the tracker's timer.
type proofDue struct{ epoch uint64 }

func newProofTracker(e *Engine, cfg *Config, p *peers) *proofTracker {
	return &proofTracker{e: e, cfg: cfg, peers: p}
}

// Receive implements actor.Actor.
func (p *proofTracker) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.cfg.Hooks.started(ProofTrackerName)
		p.epoch = epochCounter.Add(1)
		p.committed, p.proven = p.cfg.Store.Tips()
		p.pending, p.asking, p.known = map[uint64][]byte{}, map[uint64]bool{}, 0
		p.suspect = make([]time.Time, len(p.cfg.Upstreams))
		p.sched = NewProofSchedule(p.cfg.PollInterval, p.cfg.ProofMaxWait)
		p.callCtx, p.cancel = context.WithCancel(context.Background())
		self, root, epoch := ctx.Self(), ctx.ActorSystem().Root, p.epoch
		p.timer = time.AfterFunc(time.Hour, func() { root.Send(self, proofDue{epoch: epoch}) })
		p.timer.Stop()
		p.timerAt = time.Time{}
		p.step(ctx)
	case *actor.Restarting, *actor.Stopping:
		if p.cancel != nil {
			p.cancel()
			p.timer.Stop()
		}
		p.calls.Wait()
	case *actor.Stopped:
	default:
		p.cfg.Hooks.receive(ProofTrackerName, m)
		p.handle(m)
		p.step(ctx)
	}
}

func (p *proofTracker) handle(msg any) {
	switch m := msg.(type) {
	case *messages.Applied:
		p.committed = max(p.committed, m.Tip)
	case *messages.ProofArrived:
		p.known = max(p.known, m.Number)
		if m.Number > p.proven && len(p.pending) < maxPendingProofs {
			p.hold(m.Number, m.Proof)
		}
	case *proofAnswer:
		if m.epoch != p.epoch {
			return
		}
		delete(p.asking, m.n)
		switch {
		case m.err != nil:
			p.sched.Miss(m.at)
		case m.bad != nil:
			p.e.stats.RedundantBytes.Add(int64(m.blockSize))
			p.cfg.Metrics.Bytes("redundant", m.blockSize)
			p.cfg.Metrics.Rejected("proof")
			p.suspect[m.upstream] = m.at.Add(p.cfg.SuspectFor)
			p.e.notes.suspect(p.cfg.Upstreams[m.upstream].Name(), fmt.Sprintf("bad proof of block %d: %v", m.n, m.bad), p.suspect[m.upstream])
			p.cfg.Log.Warn("proof rejected: upstream marked suspect", "block", m.n,
				"upstream", p.cfg.Upstreams[m.upstream].Name(), "err", m.bad)
			p.sched.Miss(m.at)
		case m.proof != nil:
			p.e.stats.RedundantBytes.Add(int64(m.blockSize))
			p.e.stats.ProofBytes.Add(int64(len(m.proof)))
			p.cfg.Metrics.Bytes("redundant", m.blockSize)
			p.cfg.Metrics.Bytes("useful", len(m.proof))
			p.known = max(p.known, m.n)
			if ts, err := p.timestamp(m.n); err == nil && !m.known {
				p.sched.Hit(m.at, ts)
			} else {
				p.sched.Reset()
			}
			if m.n > p.proven {
				p.hold(m.n, m.proof)
			}
		default:
			p.e.stats.RedundantBytes.Add(int64(m.blockSize))
			p.cfg.Metrics.Bytes("redundant", m.blockSize)
			p.sched.Miss(m.at)
		}
	case proofDue:
		if m.epoch == p.epoch {
			p.timerAt = time.Time{}
		}
	}
}

// step applies every proof it can, in order, then asks for the next one or
// arms the timer for when to.
func (p *proofTracker) step(ctx actor.Context) {
	// Every consecutive proof at hand goes in one batch (one fsync, one
	// transaction); a batch that fails is retried one proof at a time, so a
	// bad proof costs only itself.
	var batch [][]byte
	for n := p.proven + 1; n <= p.committed && p.pending[n] != nil && len(batch) < proofBatchMax; n++ {
		batch = append(batch, p.pending[n])
	}
	wait := proofBatchWait
	if len(p.pending) > len(batch) {
		wait = proofBatchWaitBehind
	}
	if due := p.oldest.Add(wait); len(batch) > 0 && len(batch) < proofBatchMax && time.Now().Before(due) {
		// Let the batch grow a little, but keep asking for the proof after
		// it meanwhile: stopping the asks for the wait would cap the proven
		// tip at one proof per wait, behind any faster chain.
		p.arm(due)
		batch = nil
	}
	if len(batch) > 0 {
		p.oldest = time.Time{}
		if len(p.pending) > len(batch) {
			p.oldest = time.Now() // the rest starts a new batch
		}
	}
	if len(batch) > 0 && p.apply(p.proven+1, batch) != nil {
		for _, proof := range batch {
			if p.apply(p.proven+1, [][]byte{proof}) != nil {
				delete(p.pending, p.proven+1)
				break
			}
		}
	}
	if len(batch) > 0 {
		ctx.Send(p.peers.supervisor, &messages.Proven{Tip: p.proven})
	}
	for k := range p.pending {
		if k <= p.proven {
			delete(p.pending, k)
		}
	}
	// Proofs known to exist are asked at once, a few at a time, while asks
	// find them; any other, or after a miss, one at a time on the schedule.
	skip := func(n uint64) bool { return p.pending[n] != nil || p.asking[n] }
	known, next := ProofAsks(p.proven, p.committed, p.known, skip, len(p.asking), proofAsksMax, p.sched.Clear())
	for _, n := range known {
		p.ask(ctx, n, true)
	}
	if next == 0 {
		return
	}
	ts, err := p.timestamp(next)
	if err != nil {
		return
	}
	now := time.Now()
	if at := p.sched.Next(now, ts); at.After(now) {
		p.arm(at)
		return
	}
	p.ask(ctx, next, false)
}

// hold keeps a proof until its batch goes.
func (p *proofTracker) hold(n uint64, proof []byte) {
	if len(p.pending) == 0 || p.oldest.IsZero() {
		p.oldest = time.Now()
	}
	p.pending[n] = proof
}

// arm makes the timer fire at t, unless it fires earlier already.
func (p *proofTracker) arm(t time.Time) {
	if p.timerAt.IsZero() || t.Before(p.timerAt) {
		p.timerAt = t
		p.timer.Reset(max(time.Until(t), 0))
	}
}

// apply applies proofs from first on; on success the proven tip moves. Each
// proof's application is a span of its own, linked to its block's trace.
func (p *proofTracker) apply(first uint64, proofs [][]byte) error {
	spans := make([]trace.Span, len(proofs))
	for i := range proofs {
		n := first + uint64(i)
		opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithAttributes(attribute.Int64("block.number", int64(n)))}
		if sc, ok := p.e.journeys.link(n); ok {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		_, spans[i] = p.e.journeys.tracer.Start(context.Background(), "proof", opts...)
	}
	err := p.cfg.Store.ApplyProofs(context.Background(), first, proofs)
	for _, s := range spans {
		if err != nil {
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
	switch {
	case err == nil:
		p.proven = first + uint64(len(proofs)) - 1
		p.sched.Reset()
		p.cfg.Metrics.Tips(p.cfg.Store.Tips())
	case errors.Is(err, store.ErrProofOrder):
		_, p.proven = p.cfg.Store.Tips() // the store moved on; follow it
	case errors.Is(err, block.ErrProof) && len(proofs) == 1 && p.lastBad != err.Error():
		p.lastBad = err.Error()
		p.cfg.Log.Warn("proof rejected", "block", first, "err", err)
	}
	return err
}

func (p *proofTracker) timestamp(n uint64) (time.Time, error) {
	h, err := p.cfg.Store.Snapshot().Header(context.Background(), n)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(int64(h.Timestamp)), nil
}

// ask requests block n with its proof from the next upstream in turn that
// is not suspect (or the next in turn, if all are).
func (p *proofTracker) ask(ctx actor.Context, n uint64, known bool) {
	p.asking[n] = true
	i, now := p.asks%len(p.cfg.Upstreams), time.Now()
	for k := range len(p.cfg.Upstreams) {
		if j := (p.asks + k) % len(p.cfg.Upstreams); now.After(p.suspect[j]) {
			i = j
			break
		}
	}
	up := p.cfg.Upstreams[i]
	p.asks = i + 1
	self, root, epoch, callCtx := ctx.Self(), ctx.ActorSystem().Root, p.epoch, p.callCtx
	p.calls.Add(1)
	go func() {
		defer p.calls.Done()
		cctx, cancel := context.WithTimeout(callCtx, p.cfg.FetchTimeout)
		raw, proof, err := up.GetBlock(cctx, n, true)
		cancel()
		a := &proofAnswer{epoch: epoch, n: n, upstream: i, proof: proof, blockSize: len(raw), err: err, known: known}
		if err == nil && proof != nil {
			// Checked against the block committed here rather than left to
			// the store, so that the upstream is blamed by name and asked
			// last for a while.
			if h, herr := p.cfg.Store.Snapshot().Header(callCtx, n); herr != nil {
				a.err = herr
			} else {
				a.bad = p.cfg.Store.Genesis().Verifier().VerifyProof(n, h.Commitment(), proof)
			}
			if a.err != nil || a.bad != nil {
				a.proof = nil
			}
		}
		a.at = time.Now()
		root.Send(self, a)
	}()
}
