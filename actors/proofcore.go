package actors

import (
	"time"
)

// Tunables of the ProofCore, each with the reason for its value.
const (
	// maxPendingProofs bounds the proofs held for blocks not yet committed
	// or not yet next in order (they arrive with blocks fetched ahead).
	maxPendingProofs = 4096
	// proofAsksMax bounds the asks in flight at once; more than one only
	// for proofs known to exist.
	proofAsksMax = 8
	// Proofs are applied in batches (one fsync and one transaction each):
	// a batch goes when it reaches proofBatchMax, or when its oldest proof
	// has waited proofBatchWait; proofBatchWaitBehind while proofs of blocks
	// not yet committed are at hand (catching up: more are about to join).
	// In steady state that delays the proven tip by at most proofBatchWait.
	proofBatchMax        = 256
	proofBatchWait       = 25 * time.Millisecond
	proofBatchWaitBehind = 250 * time.Millisecond
)

// ProofCore is the ProofTracker's decision logic as a deterministic state
// machine: it advances the proven tip strictly in order and only over
// blocks committed here, from proofs that came with blocks (free) and from
// asks it hands to the FetchCore (each fetches the block again), on the
// ProofSchedule. Proofs known to exist (a later one was seen: proofs are
// made in order) are asked at once, a few at a time. thread-compatible.
type ProofCore struct {
	cfg       ProofConfig
	proven    uint64
	committed uint64
	times     map[uint64]time.Time // timestamps of committed, unproven blocks
	pending   map[uint64]any       // proofs at hand, not yet applied
	oldest    time.Time            // when the oldest proof not yet applied arrived
	sched     *ProofSchedule
	asking    map[uint64]ask // asks in flight, by block
	known     uint64         // highest block whose proof an upstream has shown
	applying  bool           // a batch is out; its result is awaited
	holding   bool           // an upstream holds proof asks: ask at the commit, not on the schedule
	single    bool           // the last batch failed: apply one at a time
	missed    uint64         // the block the schedule's misses are about
	wakeAt    time.Time
	ready     ProofReady
	out       ProofReady // what Ready returned last
}

type ask struct {
	sent       time.Time
	onSchedule bool
}

// ProofConfig configures a ProofCore.
type ProofConfig struct {
	MinWait  time.Duration // first retry after a miss (the poll interval)
	MaxWait  time.Duration // longest retry wait after misses
	MaxDelay time.Duration // longest proof delay learned
	// AskTimeout: an ask with no answer after this long is given up (the
	// Fetcher restarted and lost it) and retried on the schedule.
	AskTimeout time.Duration
}

// ProofBatch is an effect: apply these proofs, of blocks First, First+1, ...
type ProofBatch struct {
	First  uint64
	Proofs []any
}

// ProofReady holds the effects of the steps since the last Ready.
type ProofReady struct {
	Wants  []ProofWant // for the FetchCore
	Apply  *ProofBatch // at most one at a time; step ProofsApplied with its result
	Proven uint64      // the new proven tip (0: unchanged)
	Logs   []LogLine
	WakeAt time.Time
}

// Events of the ProofCore.
type (
	// Committed: block N, with timestamp Time, is committed here.
	Committed struct {
		N    uint64
		Time time.Time
	}
	// ProofCame: the proof of block N came with the block.
	ProofCame struct {
		N     uint64
		Proof any
	}
	// ProofHolding: whether an upstream holds proof asks until the proof
	// exists (the FetchCore's Holding effect).
	ProofHolding struct{ On bool }
	// AsksLost: the asks in flight will not be answered (the Fetcher,
	// which placed them, restarted): ask again now rather than after
	// AskTimeout.
	AsksLost struct{}
	// ProofsApplied: the batch from First of Count proofs was applied (Err
	// nil), or not. OrderProven is the store's proven tip when the store
	// had moved on (the batch was out of order).
	ProofsApplied struct {
		First       uint64
		Count       int
		Err         error
		BadProof    bool // a proof failed verification
		OrderProven uint64
	}
)

// NewProofCore starts at the store's tips; times has the timestamps of the
// committed, unproven blocks it could read (those missing are asked at once).
func NewProofCore(cfg ProofConfig, committed, proven uint64, times map[uint64]time.Time) *ProofCore {
	if times == nil {
		times = map[uint64]time.Time{}
	}
	return &ProofCore{cfg: cfg, proven: proven, committed: committed, times: times,
		pending: map[uint64]any{}, asking: map[uint64]ask{},
		sched: NewProofSchedule(cfg.MinWait, cfg.MaxWait, cfg.MaxDelay)}
}

// Proven is the proven tip as the core knows it.
func (p *ProofCore) Proven() uint64 { return p.proven }

// Schedule is the core's proof schedule (read only to callers).
func (p *ProofCore) Schedule() *ProofSchedule { return p.sched }

// Ready returns the effects since the last call and clears them.
func (p *ProofCore) Ready() *ProofReady {
	o := p.out
	p.out = p.ready
	p.ready = ProofReady{Wants: o.Wants[:0], Logs: o.Logs[:0]}
	return &p.out
}

// Step applies one event at now, then applies what it can and asks what
// is due.
func (p *ProofCore) Step(now time.Time, ev any) {
	switch e := ev.(type) {
	case Tick:
		if !p.wakeAt.After(now) {
			p.wakeAt = time.Time{}
		}
	case Committed:
		if e.N > p.proven && len(p.times) < maxPendingProofs {
			p.times[e.N] = e.Time
		}
		p.committed = max(p.committed, e.N)
	case ProofCame:
		p.known = max(p.known, e.N)
		if e.N > p.proven && len(p.pending) < maxPendingProofs {
			p.hold(e.N, e.Proof, now)
		}
	case ProofAnswer:
		p.answer(now, e)
	case ProofsApplied:
		p.applied(e)
	case AsksLost:
		clear(p.asking)
	case ProofHolding:
		p.holding = e.On
	}
	p.step(now)
}

func (p *ProofCore) answer(now time.Time, a ProofAnswer) {
	k, ok := p.asking[a.N]
	if !ok {
		return
	}
	delete(p.asking, a.N)
	// The upstream's proven tip: proofs are made in order, so every one
	// up to it exists and is asked at once, a few at a time (a burst of
	// proofs arrives in a round trip or two, not one per proof). A lie
	// costs asks that find nothing, bounded by proofAsksMax.
	p.known = max(p.known, a.UpstreamProven)
	bt, hasTime := p.times[a.N]
	teaches := !a.Known && hasTime
	switch {
	case a.Outcome != Served || a.BadProof != "":
		// No word on whether the proof exists (the call failed, the block
		// was bad or missing there, the proof a forgery): not a miss.
		p.sched.Failed(now)
	case a.Proof != nil:
		p.known = max(p.known, a.N)
		if teaches {
			p.sched.Hit(k.sent, bt, k.onSchedule)
		} else {
			p.sched.Reset()
		}
		if a.N > p.proven {
			p.hold(a.N, a.Proof, now)
		}
	case a.Known:
		// It was known to exist: this upstream lacks it (a follower behind,
		// or a bad proof). Back to the schedule.
		p.sched.Failed(now)
	default:
		p.sched.Miss(now, k.sent.Sub(bt), teaches)
		p.missed = a.N
	}
}

func (p *ProofCore) applied(e ProofsApplied) {
	p.applying = false
	switch {
	case e.Err == nil:
		p.proven = e.First + uint64(e.Count) - 1
		p.ready.Proven = p.proven
		p.single = false
		if p.proven >= p.missed {
			p.sched.Reset() // the block that missed is proven: the next one starts afresh
		}
	case e.OrderProven > 0:
		p.proven = max(p.proven, e.OrderProven) // the store moved on; follow it
		p.ready.Proven = p.proven
	case e.Count > 1:
		p.single = true // find the bad one, one at a time
	default:
		delete(p.pending, e.First)
		if e.BadProof {
			p.ready.Logs = append(p.ready.Logs, LogLine{Warn: true, Msg: "proof rejected", Upstream: -1, N: e.First})
		}
	}
	for n := range p.pending {
		if n <= p.proven {
			delete(p.pending, n)
		}
	}
	for n := range p.times {
		if n <= p.proven {
			delete(p.times, n)
		}
	}
}

func (p *ProofCore) hold(n uint64, proof any, now time.Time) {
	if len(p.pending) == 0 || p.oldest.IsZero() {
		p.oldest = now
	}
	p.pending[n] = proof
}

func (p *ProofCore) step(now time.Time) {
	var wake time.Time
	arm := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	if !p.applying {
		// Every consecutive proof at hand goes in one batch (one fsync, one
		// transaction), after it had a little while to grow.
		count := 0
		for n := p.proven + 1; n <= p.committed && p.pending[n] != nil && count < proofBatchMax; n++ {
			count++
			if p.single {
				break
			}
		}
		wait := proofBatchWait
		if len(p.pending) > count {
			wait = proofBatchWaitBehind
		}
		if due := p.oldest.Add(wait); count > 0 && count < proofBatchMax && !p.single && now.Before(due) {
			arm(due) // and keep asking meanwhile: stopping would cap the proven tip
			count = 0
		}
		if count > 0 {
			b := &ProofBatch{First: p.proven + 1, Proofs: make([]any, count)}
			for i := range b.Proofs {
				b.Proofs[i] = p.pending[b.First+uint64(i)]
			}
			p.ready.Apply, p.applying = b, true
			p.oldest = time.Time{}
			if len(p.pending) > count {
				p.oldest = now // the rest starts a new batch
			}
		}
	}
	for n, k := range p.asking {
		if exp := k.sent.Add(p.cfg.AskTimeout); p.cfg.AskTimeout > 0 && !now.Before(exp) {
			delete(p.asking, n)
			p.sched.Failed(now)
		} else if p.cfg.AskTimeout > 0 {
			arm(exp)
		}
	}
	skip := func(n uint64) bool { _, asked := p.asking[n]; return p.pending[n] != nil || asked }
	known, next := ProofAsks(p.proven, p.committed, p.known, skip, len(p.asking), proofAsksMax, p.sched.Clear())
	wantsBefore := len(p.ready.Wants)
	for _, n := range known {
		p.asking[n] = ask{sent: now}
		p.ready.Wants = append(p.ready.Wants, ProofWant{N: n, Known: true})
	}
	if next != 0 {
		bt, ok := p.times[next]
		at := now
		if ok && (!p.holding || p.missed == next) {
			// Held, an early ask costs nothing: it is answered when the
			// proof exists. Unheld, it is a miss: the schedule guesses
			// (and after a miss, held or not, it spaces the asks).
			at = p.sched.Next(now, bt)
		}
		if at.After(now) {
			arm(at)
		} else {
			p.asking[next] = ask{sent: now, onSchedule: ok && p.sched.OnSchedule(now, bt)}
			p.ready.Wants = append(p.ready.Wants, ProofWant{N: next})
		}
	}
	if asked := len(p.ready.Wants) > wantsBefore; asked && p.cfg.AskTimeout > 0 {
		// The asks made now time out then, even if nothing else steps the
		// core meanwhile (a quiet chain: the lost ask would hold the
		// proven tip for good).
		arm(now.Add(p.cfg.AskTimeout))
	}
	if !wake.IsZero() && !wake.Equal(p.wakeAt) {
		p.wakeAt = wake
		p.ready.WakeAt = wake
	}
}
