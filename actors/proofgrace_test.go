package actors

import (
	"testing"
	"time"
)

// TestProofGrace: the grace is asked only after two proof asks in a row
// came back within it (and a round trip); a block that comes without its
// proof turns it off for 8 blocks, then 16 at the next miss, and a run of
// blocks with their proofs brings the backoff back to 8.
func TestProofGrace(t *testing.T) {
	const grace, rtt = 20 * time.Millisecond, 10 * time.Millisecond
	g := NewProofGrace(grace)
	if g.For(1) != 0 {
		t.Fatalf("grace asked before any proof was seen")
	}
	g.ProofCame(1, 25*time.Millisecond, rtt)
	g.ProofCame(2, time.Second, rtt) // slow: the count starts again
	g.ProofCame(3, 25*time.Millisecond, rtt)
	if g.For(4) != 0 {
		t.Fatalf("grace asked after one quick proof (a slow one between)")
	}
	g.ProofCame(4, 29*time.Millisecond, rtt)
	if g.For(5) != grace {
		t.Fatalf("grace %s after two quick proofs in a row, want %s", g.For(5), grace)
	}
	g.BlockCame(5, true)
	g.BlockCame(6, false) // a miss: off for 8 blocks
	for n := uint64(7); n < 14; n++ {
		if g.ProofCame(n, time.Millisecond, rtt); g.For(n+1) != 0 {
			t.Fatalf("grace asked for block %d, %d after a miss", n+1, n+1-6)
		}
	}
	g.ProofCame(14, time.Millisecond, rtt)
	g.ProofCame(15, time.Millisecond, rtt)
	if g.For(16) != grace {
		t.Fatalf("grace not asked again 8 blocks after a miss, with quick proofs")
	}
	g.BlockCame(16, false) // a second miss: off for 16
	g.ProofCame(30, time.Millisecond, rtt)
	g.ProofCame(31, time.Millisecond, rtt)
	if g.For(32) != 0 {
		t.Fatalf("grace asked 16 blocks after a second miss, want off for 16")
	}
	g.ProofCame(32, time.Millisecond, rtt)
	g.ProofCame(33, time.Millisecond, rtt)
	if g.For(34) != grace {
		t.Fatalf("grace not asked again after its second backoff")
	}
	for n := uint64(34); n < 34+graceHits; n++ {
		g.BlockCame(n, true)
	}
	g.BlockCame(34+graceHits, false)
	end := uint64(34 + graceHits + graceOffMin)
	g.ProofCame(end, time.Millisecond, rtt)
	g.ProofCame(end+1, time.Millisecond, rtt)
	if g.For(end+2) != grace {
		t.Fatalf("after %d blocks with their proofs, a miss should cost %d blocks again", graceHits, graceOffMin)
	}
	if NewProofGrace(0).For(1) != 0 {
		t.Fatalf("grace asked with none configured")
	}
	off := NewProofGrace(0)
	off.ProofCame(1, time.Millisecond, rtt)
	off.ProofCame(2, time.Millisecond, rtt)
	if off.For(3) != 0 {
		t.Fatalf("grace asked with none configured, after quick proofs")
	}
}

// TestFetchHeldProbeAsksGrace: once proof asks held at an upstream come
// back within the grace, the core's held probes ask that upstream to wait
// the grace for each block's proof.
func TestFetchHeldProbeAsksGrace(t *testing.T) {
	cfg := holdConfig("a")
	cfg.ProofGrace = 20 * time.Millisecond
	s := newFetchSim(t, cfg, 1)
	s.autoAck = true
	blocks := holdingChain(t0, time.Second, 10*time.Millisecond, 30*time.Second)
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		if c.Proof {
			// The proof is there a moment after its block.
			return CallDone{Outcome: Served, Size: 1000, Proof: true, Payload: "proof", HoldKnown: true, HoldMax: 30 * time.Second},
				13 * time.Millisecond, true
		}
		d, took, ok := blocks(c, at)
		if c.Grace > 0 && d.Outcome == Served {
			d.Proof = true // waited the moment for it
		}
		return d, took, ok
	}
	s.step(Tick{})
	s.run(s.at(5 * time.Second))
	for _, c := range s.callsSince(t0) {
		if c.Grace != 0 {
			t.Fatalf("call %+v asked a grace before any proof was seen", c)
		}
	}
	s.step(ProofWanted{Wants: []ProofWant{{N: 4}}})
	s.run(s.at(5500 * time.Millisecond))
	s.step(ProofWanted{Wants: []ProofWant{{N: 5}}})
	from := s.now
	s.run(s.at(8 * time.Second))
	probes := 0
	for _, c := range s.callsSince(from) {
		if c.Proof {
			continue
		}
		probes++
		if c.Hold != HoldBlock || c.Grace != 20*time.Millisecond {
			t.Fatalf("probe %+v after two quick proofs: want held for its block with a 20 ms grace", c)
		}
	}
	if probes == 0 {
		t.Fatalf("no probes after the proofs")
	}
}
