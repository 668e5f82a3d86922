package actors

import (
	"testing"
	"time"
)

// holdingChain answers as chain does, from a store that holds calls (up to
// maxHold) and says so in every answer: a held probe for a block not made
// yet is answered when it is made (or when its wait ends), a round trip
// later.
func holdingChain(genesis time.Time, interval, rtt, maxHold time.Duration) func(c Call, at time.Time) (CallDone, time.Duration, bool) {
	plain := chain(genesis, interval, rtt)
	return func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		made := genesis.Add(time.Duration(c.N) * interval)
		d, took, ok := plain(c, at)
		if c.Hold == HoldBlock && d.Outcome == Empty {
			wait := min(c.Wait, maxHold)
			release := at.Add(rtt / 2).Add(wait)
			if interval > 0 && made.Before(release) {
				release = made
			}
			d, _, ok = plain(c, release)
			took = release.Sub(at) + rtt/2
		}
		d.HoldKnown, d.HoldMax = true, maxHold
		return d, took, ok
	}
}

func holdConfig(upstreams ...string) FetchConfig {
	cfg := testFetchConfig(upstreams...)
	cfg.HoldWait = 5 * time.Second
	return cfg
}

// TestFetchHeldProbes: once an upstream has said that it holds calls, a
// caught-up core asks it to hold each probe (the fetch timeout plus the
// wait as the call's timeout), and gets each block a round trip after it
// is made, with one call per block: no polls in between.
func TestFetchHeldProbes(t *testing.T) {
	const rtt = 10 * time.Millisecond
	s := newFetchSim(t, holdConfig("a"), 1)
	s.autoAck = true
	s.answer = holdingChain(t0, time.Second, rtt, 30*time.Second)
	s.step(Tick{})
	s.run(s.at(10 * time.Second))
	from := s.now
	s.run(s.at(30 * time.Second))
	calls := s.callsSince(from)
	if len(calls) < 19 || len(calls) > 21 {
		t.Fatalf("%d calls over 20 blocks, want one per block", len(calls))
	}
	for _, c := range calls {
		if c.Hold != HoldBlock || c.Wait != 5*time.Second || c.Timeout != time.Second+5*time.Second {
			t.Fatalf("call %+v: want held for its block, 5 s, timeout 6 s", c)
		}
	}
	if n := len(s.delivered); n < 29 {
		t.Fatalf("%d blocks delivered by 30 s", n)
	}
	// The Book learned no round trip from the held calls: hedges of its
	// other calls still go after a few round trips, not seconds.
	if h := s.c.Book().HedgeAfter(0); h > 100*time.Millisecond {
		t.Fatalf("hedge after %s: held calls taught the Book their wait as a round trip", h)
	}
}

// TestFetchHeldProbeEnds: a held probe that waited its whole wait is
// followed by the next at once (it said as much as a poll); one answered
// empty sooner (the store did not hold it: its pool was full) by the next a
// poll interval later.
func TestFetchHeldProbeEnds(t *testing.T) {
	s := newFetchSim(t, holdConfig("a"), 1)
	s.answer = holdingChain(t0, 0, 10*time.Millisecond, 30*time.Second) // no block ever
	s.step(Tick{})
	// The first calls (the window, before any answer said that the store
	// holds) are plain ones; then one held call per 5 s wait.
	s.run(s.at(time.Second))
	first := s.now
	s.run(s.at(21 * time.Second))
	calls := s.callsSince(first)
	for _, c := range calls {
		if c.Hold != HoldBlock {
			t.Fatalf("call %+v once the store said it holds: want held", c)
		}
	}
	if len(calls) < 3 || len(calls) > 5 {
		t.Fatalf("%d calls over 20 s of 5 s waits", len(calls))
	}
	// Now the store answers at once (its pool is full): back to polling.
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		return CallDone{Outcome: Empty, HoldKnown: true, HoldMax: 30 * time.Second}, 10 * time.Millisecond, true
	}
	s.run(s.at(27 * time.Second))
	from := s.now
	s.run(s.at(29 * time.Second))
	if n := len(s.callsSince(from)); n > int(2*time.Second/testPoll)+1 || n < 2 {
		t.Fatalf("%d calls in 2 s answered at once; want one per poll interval (%s)", n, testPoll)
	}
}

// TestFetchHeldProbeHedged: a held probe is not hedged while its block is
// not known to exist; once it is (a tip seen moved the edge past it), an
// upstream that still does not answer is asked no longer than any late
// call, and another gets the block.
func TestFetchHeldProbeHedged(t *testing.T) {
	s := newFetchSim(t, holdConfig("staller", "b"), 1)
	s.autoAck = true
	honest := holdingChain(t0, time.Second, 10*time.Millisecond, 30*time.Second)
	stalled := false
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		if c.Upstream == 0 && c.Hold == HoldBlock && c.N == 12 {
			stalled = true
			return CallDone{}, 0, false // holds it and never answers
		}
		return honest(c, at)
	}
	s.step(Tick{})
	s.run(s.at(11500 * time.Millisecond))
	if !stalled {
		t.Fatalf("the probe of block 12 did not go to the staller (calls %+v)", s.calls[len(s.calls)-3:])
	}
	// Block 12 is made at 12 s; at 12.5 s the health poller sees b at 12.
	s.run(s.at(12500 * time.Millisecond))
	if len(s.delivered) != 11 {
		t.Fatalf("%d blocks delivered before block 12 was known", len(s.delivered))
	}
	s.step(TipSeen{Upstream: 1, Tip: 12})
	s.run(s.at(13 * time.Second))
	if len(s.delivered) < 12 || s.delivered[11].Upstream != 1 {
		t.Fatalf("block 12 not delivered from b within 0.5 s of being known (delivered %d)", len(s.delivered))
	}
}

// TestFetchHoldingReported: the core says at its first step whether an
// upstream holds proof asks, and again when that changes.
func TestFetchHoldingReported(t *testing.T) {
	c := NewFetchCore(holdConfig("a"), 1, t0)
	c.Step(t0, Tick{})
	if r := c.Ready(); !r.HoldingChanged || r.Holding {
		t.Fatalf("first step: changed %v, holding %v; want it said, false", r.HoldingChanged, r.Holding)
	}
	c.Step(t0, CallDone{ID: c.lastID, Outcome: Empty, HoldKnown: true, HoldMax: 30 * time.Second, Took: time.Millisecond})
	if r := c.Ready(); !r.HoldingChanged || !r.Holding {
		t.Fatalf("after an answer saying it holds: changed %v, holding %v", r.HoldingChanged, r.Holding)
	}
	c.Step(t0, Tick{})
	if r := c.Ready(); r.HoldingChanged {
		t.Fatal("said again with nothing changed")
	}
}

// TestFetchHeldProofAsks: a proof not known to exist is asked held, of an
// upstream that holds before one that does not; one that waited its whole
// wait without the proof is asked again at once with no answer to the
// ProofTracker; the answer with the proof carries the upstream's proven
// tip.
func TestFetchHeldProofAsks(t *testing.T) {
	s := newFetchSim(t, holdConfig("old", "holds"), 100)
	proofAt := t0.Add(12 * time.Second)
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		if c.Upstream == 0 {
			return CallDone{Outcome: Served, Size: 1000, Payload: c.N, HoldKnown: true}, 10 * time.Millisecond, true
		}
		d := CallDone{Outcome: Served, Size: 1000, HoldKnown: true, HoldMax: 30 * time.Second}
		release := at
		if c.Hold == HoldProof && at.Before(proofAt) {
			release = minTime(proofAt, at.Add(c.Wait))
		}
		if !release.Before(proofAt) {
			d.Proof, d.Payload, d.UpstreamProven = true, "proof", 104
		}
		return d, release.Sub(at) + 10*time.Millisecond, true
	}
	// Both upstreams answer once, so that the Book knows which holds.
	s.step(ProofWanted{Wants: []ProofWant{{N: 90, Known: true}, {N: 91, Known: true}}})
	s.run(s.at(time.Second))
	s.answers = nil
	from := s.now
	s.step(ProofWanted{Wants: []ProofWant{{N: 99}}})
	s.run(s.at(20 * time.Second))
	asks := s.callsSince(from)
	if len(asks) != 3 {
		t.Fatalf("%d asks for proof 99 over 20 s (proof at 12 s, waits of 5 s); want 3: %+v", len(asks), asks)
	}
	for _, c := range asks {
		if c.Upstream != 1 || c.Hold != HoldProof || !c.Proof {
			t.Fatalf("ask %+v: want a held proof ask of the upstream that holds", c)
		}
	}
	if len(s.answers) != 1 || s.answers[0].Proof == nil || s.answers[0].UpstreamProven != 104 {
		t.Fatalf("answers %+v: want one, with the proof and the upstream's proven tip", s.answers)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// TestProofCoreAsksAtCommitWhenHeld: with an upstream that holds proof
// asks, each proof is asked for as soon as its block commits (the ask waits
// there for the proof), whatever delay the schedule learned; after a miss
// (an answer without the proof: it was not held after all) the schedule
// spaces the asks again, so a store that stopped holding costs no storm.
func TestProofCoreAsksAtCommitWhenHeld(t *testing.T) {
	s := newProofSim(t, 0, 0, nil)
	// Unheld first: blocks 1 to 3, each proof made 10 s after its block,
	// asked on the schedule (misses until then), which learns the delay.
	for n := uint64(1); n <= 3; n++ {
		bt := time.Duration(n) * 20 * time.Second
		asked := s.step(bt, Committed{N: n, Time: t0.Add(bt)})
		for range 100 {
			if len(asked) > 0 {
				at := s.now.Sub(t0)
				if at >= bt+10*time.Second {
					s.step(at, ProofAnswer{N: n, Outcome: Served, Proof: n})
					break
				}
				s.step(at, ProofAnswer{N: n, Outcome: Served})
			}
			asked = s.step(s.wake.Sub(t0), Tick{})
		}
		s.step(s.now.Sub(t0)+proofBatchWait, Tick{})
		s.applied(s.now.Sub(t0), nil)
	}
	if s.proven != 3 {
		t.Fatalf("proven %d after the unheld blocks, want 3", s.proven)
	}
	if got := s.step(80*time.Second, Committed{N: 4, Time: t0.Add(80 * time.Second)}); len(got) != 0 {
		t.Fatalf("unheld, the schedule asked %+v at the commit; the test needs it to have learned the delay", got)
	}
	s.step(80*time.Second, ProofHolding{On: true})
	if s.wants[len(s.wants)-1].N != 4 {
		t.Fatalf("holding: block 4's proof not asked at once (asks %+v)", s.wants)
	}
	s.step(90*time.Second, ProofAnswer{N: 4, Outcome: Served, Proof: uint64(4)})
	s.step(90*time.Second+proofBatchWait, Tick{})
	s.applied(90*time.Second+proofBatchWait, nil)
	for n := uint64(5); n <= 5; n++ {
		at := 100 * time.Second
		got := s.step(at, Committed{N: n, Time: t0.Add(at)})
		if len(got) != 1 || got[0].N != n {
			t.Fatalf("at the commit of block %d the core asked %+v", n, got)
		}
		// The held ask is answered when the proof is made, 10 s later
		// (the schedule, unheld, would learn to wait that long).
		s.step(at+10*time.Second, ProofAnswer{N: n, Outcome: Served, Proof: n})
		s.step(at+10*time.Second+proofBatchWait, Tick{})
		s.applied(at+10*time.Second+proofBatchWait, nil)
	}
	if s.proven != 5 {
		t.Fatalf("proven %d, want 5", s.proven)
	}
	got := s.step(120*time.Second, Committed{N: 6, Time: t0.Add(120 * time.Second)})
	if len(got) != 1 || got[0].N != 6 {
		t.Fatalf("at the commit of block 6 the core asked %+v", got)
	}
	if got := s.step(120*time.Second+10*time.Millisecond, ProofAnswer{N: 6, Outcome: Served}); len(got) != 0 {
		t.Fatalf("asked %+v again at once after a miss", got)
	}
}

// TestFetchFirstAnswerSaysHolds: a core whose first calls were plain
// (before any answer said the store holds) finds the tip with them, then
// asks its probes held, one at a time, without spinning (run fails the test
// if the core keeps waking itself at one instant).
func TestFetchFirstAnswerSaysHolds(t *testing.T) {
	s := newFetchSim(t, holdConfig("a"), 1)
	s.answer = holdingChain(t0, 0, 10*time.Millisecond, 30*time.Second) // no block ever
	s.step(Tick{})
	s.run(s.at(time.Second))
	var held, plainAfter int
	for i, c := range s.calls {
		switch {
		case c.Hold == HoldBlock:
			held++
		case i >= 8:
			plainAfter++
		}
	}
	if held != 1 || plainAfter != 0 {
		t.Fatalf("%d held probes, %d plain calls after the window's first 8 (calls %+v); want one held probe", held, plainAfter, s.calls)
	}
}
