package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"storesync/block"
	"storesync/messages"
	"storesync/store"
)

// proofTracker is the shell of the ProofCore: it turns messages into the
// core's events and carries out its effects: asks go to the Fetcher (which
// places every call to an upstream), batches to the store's ApplyProofs.
type proofTracker struct {
	// immutable after construction
	e     *Engine
	cfg   *Config
	peers *peers

	// owned by the actor, rebuilt from the store at every (re)start
	epoch   uint64
	core    *ProofCore
	timer   *selfTimer
	lastBad string
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
		committed, proven := p.cfg.Store.Tips()
		p.core = NewProofCore(p.cfg.ProofConfig(), committed, proven, p.times(proven, committed))
		p.timer = newSelfTimer(ctx, proofDue{epoch: p.epoch})
		p.step(ctx, Tick{})
	case *actor.Restarting, *actor.Stopping:
		p.timer.stop()
	case *actor.Stopped:
	default:
		p.cfg.Hooks.receive(ProofTrackerName, m)
		if ev := p.event(m); ev != nil {
			p.step(ctx, ev)
		}
	}
}

// times reads the timestamps of the committed, unproven blocks (as many as
// the core keeps), so the schedule goes on where it was.
func (p *proofTracker) times(proven, committed uint64) map[uint64]time.Time {
	t := map[uint64]time.Time{}
	sn := p.cfg.Store.Snapshot()
	for n := proven + 1; n <= committed && len(t) < maxPendingProofs; n++ {
		h, err := sn.Header(context.Background(), n)
		if err != nil {
			break
		}
		t[n] = time.UnixMilli(int64(h.Timestamp))
	}
	return t
}

func (p *proofTracker) event(msg any) any {
	switch m := msg.(type) {
	case *messages.Applied:
		if m.Block == nil {
			return nil
		}
		return Committed{N: m.Tip, Time: time.UnixMilli(int64(m.Block.Header.Timestamp))}
	case *messages.ProofArrived:
		return ProofCame{N: m.Number, Proof: m.Proof}
	case *messages.ProofAnswer:
		a := ProofAnswer{N: m.Number, Known: m.Known, BadProof: m.BadProof, Size: m.Size, UpstreamProven: m.UpstreamProven}
		switch {
		case m.Failed:
			a.Outcome = Failed
		case m.Lacking:
			a.Outcome = Empty
		}
		if m.Proof != nil {
			a.Proof = m.Proof
		}
		if m.BadProof != "" {
			p.cfg.Log.Warn("proof rejected: upstream marked suspect", "block", m.Number, "upstream", m.Upstream, "err", m.BadProof)
		}
		return a
	case *messages.ProofHolding:
		return ProofHolding{On: m.On}
	case *messages.AsksLost:
		return AsksLost{}
	case proofDue:
		if m.epoch == p.epoch {
			return Tick{}
		}
	}
	return nil
}

func (p *proofTracker) step(ctx actor.Context, ev any) {
	p.core.Step(time.Now(), ev)
	for {
		r := p.core.Ready()
		if len(r.Wants) > 0 {
			ask := &messages.AskProofs{Numbers: make([]uint64, len(r.Wants)), Known: make([]bool, len(r.Wants))}
			for i, w := range r.Wants {
				ask.Numbers[i], ask.Known[i] = w.N, w.Known
			}
			ctx.Send(p.peers.fetcher, ask)
		}
		for _, l := range r.Logs {
			p.cfg.Log.Warn(l.Msg, "block", l.N)
		}
		if r.Proven > 0 {
			p.cfg.Metrics.Tips(p.cfg.Store.Tips())
		}
		p.timer.at(r.WakeAt)
		if r.Apply == nil {
			return
		}
		p.core.Step(time.Now(), p.apply(r.Apply))
	}
}

// apply applies a batch; each proof's application is a span of its own,
// linked to its block's trace.
func (p *proofTracker) apply(b *ProofBatch) ProofsApplied {
	proofs := make([][]byte, len(b.Proofs))
	spans := make([]trace.Span, len(b.Proofs))
	for i := range b.Proofs {
		proofs[i] = b.Proofs[i].([]byte)
		n := b.First + uint64(i)
		opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithAttributes(attribute.Int64("block.number", int64(n)))}
		if sc, ok := p.e.journeys.link(n); ok {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		_, spans[i] = p.e.journeys.tracer.Start(context.Background(), "proof", opts...)
	}
	err := p.cfg.Store.ApplyProofs(context.Background(), b.First, proofs)
	for _, s := range spans {
		if err != nil {
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
	res := ProofsApplied{First: b.First, Count: len(proofs), Err: err, BadProof: errors.Is(err, block.ErrProof)}
	if errors.Is(err, store.ErrProofOrder) {
		_, res.OrderProven = p.cfg.Store.Tips()
	}
	if res.BadProof && len(proofs) == 1 && p.lastBad != err.Error() {
		p.lastBad = err.Error()
		p.cfg.Log.Warn("proof rejected", "block", b.First, "err", err)
	}
	return res
}
