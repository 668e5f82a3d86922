package sim

import (
	"math/rand/v2"
	"sort"
	"time"

	"storesync/actors"
	"storesync/health"
)

// follower is one simulated follower: the engine's three cores, an apply
// queue, the health tracker, and what it measures.
type follower struct {
	w     *world
	id    int
	links []Link
	rng   *rand.Rand

	fetch *actors.FetchCore
	proof *actors.ProofCore
	apply *actors.ApplyCore

	committed, proven uint64
	commitAt          []time.Duration // by block, when committed here (0: not yet)
	provenAt          []time.Duration

	applyQ     []actors.Delivery // deliveries waiting for the apply path
	applying   bool
	proofBusy  bool
	fetchWake  time.Duration
	fetchTimer timer // Ticks for the FetchCore
	proofTimer timer // ... and for the ProofCore

	cancelled map[uint64]bool // calls cancelled before their answer came
	// waiters are the held calls of followers below waiting for this one
	// to commit a block or apply a proof; each is run once at the next
	// change (and waits again if what it wants is still not there).
	waiters []func()

	tracker  *health.Tracker
	ready    bool
	readyLog []bool // one per health evaluation after Settle

	st stats
}

// block is what a simulated fetch carries (Payload).
type block struct {
	n     uint64
	size  int
	proof bool
	lie   bool // fails ApplyBlock
	from  int
}

type stats struct {
	fetchedBytes, useful int64
	redundant            int64
	// lateBytes: the bytes of each block whose first copy came without
	// its proof (the proof was not made yet): the API's floor is the
	// useful bytes plus these, one more fetch of the block per late proof.
	lateBytes     int64
	lateProofs    int
	firstCopy     map[uint64]bool
	calls         []int // per link, after Settle
	callsAll      []int // per link, whole run
	healthCalls   int
	blocksSettled int
	suspect       []int // times each link was newly marked suspect
	hedges        int
	timeouts      []int
	rejected      int
	flips         int
}

func newFollower(w *world, id int, spec FollowerSpec) *follower {
	f := &follower{w: w, id: id, links: spec.Upstreams, rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(id)+1)),
		commitAt: make([]time.Duration, len(w.commitAt)), provenAt: make([]time.Duration, len(w.commitAt)),
		cancelled: map[uint64]bool{}, tracker: health.NewTracker(w.cfg.Health)}
	f.fetchTimer = timer{at: -1, ev: -1, fire: func() { f.stepFetch(actors.Tick{}) }}
	f.proofTimer = timer{at: -1, ev: -1, fire: func() { f.stepProof(actors.Tick{}) }}
	f.st.calls = make([]int, len(f.links))
	f.st.callsAll = make([]int, len(f.links))
	f.st.suspect = make([]int, len(f.links))
	f.st.timeouts = make([]int, len(f.links))
	f.st.firstCopy = map[uint64]bool{}
	return f
}

func (f *follower) start() {
	now := f.w.wall(0)
	if f.w.cfg.Naive {
		f.naiveStart()
		return
	}
	names := make([]string, len(f.links))
	for i, l := range f.links {
		names[i] = l.Name
	}
	// The engine's own translation of its configuration, as the actors use.
	cfg := &f.w.cfg.Engine
	f.fetch = actors.NewFetchCore(cfg.FetchConfig(names, f.w.cfg.Seed+uint64(f.id)), 1, now)
	f.proof = actors.NewProofCore(cfg.ProofConfig(), 0, 0, nil)
	f.apply = actors.NewApplyCore(cfg.ApplyConfig(), 1)
	f.stepFetch(actors.Tick{})
	f.stepProof(actors.Tick{})
	// At a phase of its own: a poll in step with the blocks would see each at once.
	f.w.at(time.Duration(f.rng.Int64N(int64(f.w.cfg.HealthInterval))), f.healthPoll)
}

func (f *follower) settled() bool { return f.w.now >= f.w.cfg.Settle }

// steady: after Settle and while the primary still makes blocks, the
// window the steady-state figures count.
func (f *follower) steady() bool { return f.settled() && f.w.now < f.w.end }

// serverTips is what store `of` holds at d: its committed tip and the
// time each proof became available there.
func (f *follower) serverHas(of int, n uint64, d time.Duration) (block, proof bool) {
	if n >= uint64(len(f.w.commitAt)) {
		return false, false // past the last block the run makes
	}
	if of < 0 {
		return n <= f.w.primaryTip(d), f.w.provenAt[n] <= d && n <= f.w.primaryTip(d)
	}
	up := f.w.followers[of]
	b := up.commitAt[n] > 0 && up.commitAt[n] <= d
	p := up.provenAt[n] > 0 && up.provenAt[n] <= d
	return b, p
}

// provenOf is store of's proven tip at d.
func (f *follower) provenOf(of int, d time.Duration) uint64 {
	if of >= 0 {
		return f.w.followers[of].proven
	}
	// provenAt does not decrease: the last block proven by d.
	tip := int(f.w.primaryTip(d))
	return uint64(sort.Search(tip, func(i int) bool { return f.w.provenAt[i+1] > d }))
}

func (f *follower) tipOf(of int, d time.Duration) uint64 {
	if of < 0 {
		return f.w.primaryTip(d)
	}
	return f.w.followers[of].committed
}

func (f *follower) stepFetch(ev any) {
	now := f.w.wall(f.w.now)
	f.fetch.Step(now, ev)
	r := f.fetch.Ready()
	for _, id := range r.Cancels {
		f.cancelled[id] = true
	}
	for _, c := range r.Calls {
		f.call(c)
	}
	for _, u := range r.Suspected {
		f.st.suspect[u]++
	}
	for _, mk := range r.Marks {
		if mk.What == "hedged" {
			f.st.hedges++
		}
	}
	f.armFetch(r.WakeAt)
	f.applyQ = append(f.applyQ, r.Deliveries...)
	holding, holdingChanged := r.Holding, r.HoldingChanged
	var answers []actors.ProofAnswer
	if len(r.ProofAnswers) > 0 {
		// Copy: the slices are reused by the next step.
		answers = append(answers, r.ProofAnswers...)
	}
	f.kickApply()
	if holdingChanged {
		f.stepProof(actors.ProofHolding{On: holding})
	}
	for _, a := range answers {
		f.stepProof(a)
	}
}

func (f *follower) armFetch(t time.Time) {
	if t.IsZero() {
		return
	}
	f.fetchWake = max(t.Sub(f.w.epoch), f.w.now)
	f.fetchTimer.arm(f.w, f.fetchWake)
}

func (f *follower) stepProof(ev any) {
	now := f.w.wall(f.w.now)
	f.proof.Step(now, ev)
	r := f.proof.Ready()
	if len(r.Wants) > 0 {
		f.stepFetch(actors.ProofWanted{Wants: append([]actors.ProofWant(nil), r.Wants...)})
	}
	if r.Apply != nil {
		b := *r.Apply
		f.proofBusy = true
		f.w.at(f.w.now+f.w.cfg.ProofApplyTime, func() {
			f.proofBusy = false
			last := b.First + uint64(len(b.Proofs)) - 1
			for n := b.First; n <= last; n++ {
				if n > f.proven {
					f.provenAt[n] = f.w.now
				}
			}
			f.proven = max(f.proven, last)
			f.stepProof(actors.ProofsApplied{First: b.First, Count: len(b.Proofs)})
			f.changed()
		})
	}
	if !r.WakeAt.IsZero() {
		f.proofTimer.arm(f.w, max(r.WakeAt.Sub(f.w.epoch), f.w.now))
	}
}

// kickApply starts the next apply if the apply path is free.
func (f *follower) kickApply() {
	if f.applying || len(f.applyQ) == 0 {
		return
	}
	d := f.applyQ[0]
	f.applyQ = f.applyQ[1:]
	now := f.w.wall(f.w.now)
	f.apply.Step(now, actors.Delivered{N: d.N, Block: d})
	r := f.apply.Ready()
	f.applyEffects(r)
}

func (f *follower) applyEffects(r *actors.ApplyReady) {
	if r.Acked > 0 {
		f.stepFetch(actors.BlockAcked{Tip: r.Acked})
	}
	if r.Resync > 0 {
		f.stepFetch(actors.ResyncFrom{Next: r.Resync})
	}
	if r.Drain {
		// Nothing else is on its way to the apply path here: the drain
		// is due at once (the simulator feeds it one block at a time).
		f.apply.Step(f.w.wall(f.w.now), actors.DrainDue{})
		f.applyEffects(f.apply.Ready())
		return
	}
	if r.Count == 0 {
		f.kickApply()
		return
	}
	group, id := f.apply.Group(), r.ID
	f.applying = true
	f.w.at(f.w.now+time.Duration(len(group))*f.w.cfg.ApplyTime, func() {
		f.applying = false
		now := f.w.wall(f.w.now)
		defer f.changed()
		for i, g := range group {
			d := g.(actors.Delivery)
			b := d.Payload.(*block)
			if b.lie {
				f.st.rejected++
				// The blocks before it commit at once; the apply time
				// above is the stage's and the commit's together.
				f.apply.Step(now, actors.Staged{Outcome: actors.ApplyRejected, Accepted: i})
				if i > 0 {
					f.apply.Step(now, actors.Applied{ID: id, Outcome: actors.ApplyOK})
				}
				r := *f.apply.Ready()
				f.stepFetch(actors.BlockRejected{N: d.N, Upstream: b.from, Why: "state root differs"})
				f.applyQ = f.applyQ[:0] // the Fetcher redelivers from here
				f.applyEffects(&r)
				return
			}
			f.committed = d.N
			f.commitAt[d.N] = f.w.now
			if f.settled() {
				f.st.blocksSettled++
			}
			if b.proof {
				f.stepProof(actors.ProofCame{N: d.N, Proof: true})
			}
			f.stepFetch(actors.BlockAcked{Tip: d.N})
			f.stepProof(actors.Committed{N: d.N, Time: f.w.wall(f.w.commitAt[d.N])})
		}
		f.apply.Step(now, actors.Staged{Outcome: actors.ApplyOK, Accepted: len(group), Took: time.Duration(len(group)) * f.w.cfg.ApplyTime})
		f.apply.Step(now, actors.Applied{ID: id, Outcome: actors.ApplyOK})
		f.applyEffects(f.apply.Ready())
	})
}

// changed runs the held calls waiting on this follower.
func (f *follower) changed() {
	ws := f.waiters
	f.waiters = nil
	for _, w := range ws {
		w()
	}
}

// call simulates one GetBlockByNumber(n, include_proof=true).
func (f *follower) call(c actors.Call) {
	l := f.links[c.Upstream]

	f.st.callsAll[c.Upstream]++
	if f.steady() {
		f.st.calls[c.Upstream]++
	}
	start := f.w.now
	rtt := l.RTT
	if l.Jitter > 0 {
		rtt += time.Duration(f.rng.Int64N(int64(l.Jitter)))
	}
	// The server sees the call half a round trip after it was sent.
	seen := start + rtt/2

	if c.Hold == "" || l.HoldMax <= 0 || l.down(start) {
		f.answer(c, l, start, rtt, seen)
		return
	}
	// Held: answered when what it waits for is there, or its wait ends;
	// with a grace, once the block is there, when its proof is too or the
	// grace ends.
	wait := min(c.Wait, l.HoldMax)
	there := func(d time.Duration) bool {
		has, hasProof := f.serverHas(l.Of, c.N, d)
		if c.Hold == actors.HoldProof {
			return !has || hasProof // a block it lacks: nothing to wait for
		}
		return has
	}
	if there(seen) {
		f.answer(c, l, start, rtt, seen)
		return
	}
	end := seen + wait
	if l.Of < 0 {
		// The primary's schedule is known in advance.
		at := f.w.commitAt[min(c.N, uint64(len(f.w.commitAt)-1))]
		if c.Hold == actors.HoldProof {
			at = f.w.provenAt[min(c.N, uint64(len(f.w.provenAt)-1))]
		} else if c.Grace > 0 && c.N < uint64(len(f.w.provenAt)) {
			at = max(at, min(f.w.provenAt[c.N], at+c.Grace))
		}
		if c.N >= uint64(len(f.w.commitAt)) || at > end {
			at = end
		}
		f.w.at(max(at, seen), func() { f.answer(c, l, start, rtt, f.w.now) })
		return
	}
	up := f.w.followers[l.Of]
	released := false
	release := func() {
		if !released {
			released = true
			f.answer(c, l, start, rtt, f.w.now)
		}
	}
	graced := false
	var wait1 func()
	wait1 = func() {
		if released {
			return
		}
		if there(f.w.now) {
			if _, hasProof := f.serverHas(l.Of, c.N, f.w.now); c.Grace <= 0 || hasProof {
				release()
				return
			}
			if !graced {
				graced = true
				f.w.at(min(f.w.now+c.Grace, end), release)
			}
		}
		up.waiters = append(up.waiters, wait1)
	}
	f.w.at(seen, wait1)
	f.w.at(end, release)
}

// answer simulates the server's answer to call c, made at `at` (when it
// saw the call, or released it from its hold), arriving half a round trip
// later (plus the transfer, plus a stall).
func (f *follower) answer(c actors.Call, l Link, start, rtt, at time.Duration) {
	down := l.down(start)
	done := actors.CallDone{ID: c.ID}
	took := at - start + rtt/2
	switch {
	case down || f.rng.Float64() < l.ErrorRate:
		done.Outcome, done.Problem = actors.Failed, "unavailable"
		took = rtt
	default:
		done.HoldKnown, done.HoldMax = true, l.HoldMax
		if l.HoldMax > 0 {
			done.UpstreamProven = f.provenOf(l.Of, at)
		}
		has, hasProof := f.serverHas(l.Of, c.N, at)
		lie := l.LieRate > 0 && f.rng.Float64() < l.LieRate
		switch {
		case lie && l.Lie == LieEmpty:
			done.Outcome = actors.Empty
		case !has:
			done.Outcome = actors.Empty
		case lie && l.Lie == LieSignature:
			done.Outcome, done.Problem, done.Size = actors.Bad, "signature does not verify", f.w.size[c.N]
		default:
			done.Outcome, done.Size = actors.Served, f.w.size[c.N]
			done.BlockTime = f.w.wall(f.w.commitAt[c.N])
			if hasProof {
				if lie && l.Lie == LieProof {
					done.BadProof = "proof does not verify"
				} else {
					done.Proof = true
				}
			}
			if c.Proof {
				if done.Proof {
					done.Payload = true
				}
			} else {
				done.Payload = &block{n: c.N, size: done.Size, proof: done.Proof, lie: lie && l.Lie == LieState, from: c.Upstream}
			}
		}
		if l.Bandwidth > 0 {
			took += time.Duration(float64(done.Size) / l.Bandwidth * float64(time.Second))
		}
		if l.StallRate > 0 && f.rng.Float64() < l.StallRate {
			took += l.StallFor
		}
	}
	if took >= c.Timeout {
		done = actors.CallDone{ID: c.ID, Outcome: actors.TimedOut, Problem: "deadline exceeded"}
		took = c.Timeout
	}
	done.Took = took
	f.w.at(start+took, func() {
		if f.cancelled[c.ID] {
			delete(f.cancelled, c.ID)
			return // its bytes never came: the call was cancelled
		}
		f.st.fetchedBytes += int64(done.Size)
		if done.Proof {
			f.st.fetchedBytes += int64(f.w.cfg.ProofSize)
		}
		if !c.Proof && done.Outcome == actors.Served && !f.st.firstCopy[c.N] {
			f.st.firstCopy[c.N] = true
			if !done.Proof {
				f.st.lateBytes += int64(done.Size)
				f.st.lateProofs++
			}
		}
		if done.Outcome == actors.TimedOut {
			f.st.timeouts[c.Upstream]++
		}
		f.stepFetch(done)
	})
}

// healthPoll runs the health Tracker as the Poller would: each upstream's
// tip, once per interval, then an evaluation; and the tip goes to the
// FetchCore as the runtime passes it on.
func (f *follower) healthPoll() {
	now := f.w.wall(f.w.now)
	for i, l := range f.links {
		f.st.healthCalls++
		if l.down(f.w.now) {
			continue
		}
		tip := f.tipOf(l.Of, f.w.now)
		f.tracker.Observe(l.Name, tip, now)
		if f.fetch != nil {
			f.stepFetch(actors.TipSeen{Upstream: i, Tip: tip})
		}
	}
	v := f.tracker.Evaluate(now, f.committed)
	if f.settled() && f.w.now < f.w.end {
		if v.Ready != f.ready {
			f.st.flips++
		}
		f.readyLog = append(f.readyLog, v.Ready)
	}
	f.ready = v.Ready
	if f.w.now < f.w.end+f.w.cfg.ProofDelay+f.w.cfg.ProofJitter {
		f.w.at(f.w.now+f.w.cfg.HealthInterval, f.healthPoll)
	}
}

// lagSamples is the follower's lag behind the primary every sampleEvery
// from Settle until the last block was made, from the commit times.
func (f *follower) lagSamples() []float64 {
	var out []float64
	var tip uint64 // committed here at t
	for t := f.w.cfg.Settle; t < f.w.end; t += sampleEvery {
		for tip+1 < uint64(len(f.commitAt)) && f.commitAt[tip+1] > 0 && f.commitAt[tip+1] <= t {
			tip++
		}
		p := f.w.primaryTip(t)
		out = append(out, float64(p-min(p, tip)))
	}
	return out
}

// timer is a core's timer in simulated time: it stands at one time, moved
// earlier or later by each arm, with one pending event at most that is
// still wanted (earlier ones it replaced are ignored when they run).
type timer struct {
	at   time.Duration // when it fires (-1: not armed)
	ev   time.Duration // when its pending event runs (-1: none)
	gen  uint64        // of the pending event
	fire func()
}

func (t *timer) arm(w *world, at time.Duration) {
	t.at = at
	if t.ev >= 0 && t.ev <= at {
		return // the pending event comes first and moves itself on
	}
	t.schedule(w, at)
}

func (t *timer) schedule(w *world, at time.Duration) {
	t.gen++
	t.ev = at
	w.seq++
	w.q.push(event{at: max(at, w.now), seq: w.seq, t: t, gen: t.gen})
}

func (t *timer) run(w *world, gen uint64) {
	if gen != t.gen {
		return // replaced by an earlier one
	}
	t.ev = -1
	switch {
	case t.at < 0:
	case t.at > w.now:
		t.schedule(w, t.at)
	default:
		t.at = -1
		t.fire()
	}
}

// down reports whether the link is in one of its outages at d.
func (l *Link) down(d time.Duration) bool {
	for _, o := range l.Outages {
		if d >= o[0] && d < o[1] {
			return true
		}
	}
	return false
}
