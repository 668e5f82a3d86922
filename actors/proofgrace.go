package actors

import "time"

// Tunables of the proof grace, each with the reason for its value.
const (
	// graceQuick: proof asks answered quickly in a row before the held
	// probe asks for a grace. Two: one quick answer may be a proof that
	// happened to be made early; two in a row are the upstream's habit.
	graceQuick = 2
	// graceOffMin and graceOffMax bound how many blocks the grace stays
	// off after a block came without its proof: doubled at each miss, so
	// a prover a little slower than the grace costs the lag of one grace
	// in at most graceOffMax blocks, and reset after graceHits blocks in
	// a row came with their proofs.
	graceOffMin = 8
	graceOffMax = 256
	graceHits   = 16
)

// ProofGrace decides how long a held probe asks its upstream to wait, once
// the block has committed there, for the block's proof before answering
// (the read API's storesync-hold-grace). Where the upstream proves a block
// within moments of committing it, a probe answered at the commit would
// bring the block without its proof, and the block's bytes would be
// fetched a second time for the proof a few milliseconds later. Waiting a
// grace brings both in one answer, for at most the grace's lag.
//
// It asks for the grace only where proofs have been seen to come that
// soon: two proof asks in a row answered within the grace (plus a round
// trip) of their asking, which the ProofTracker does at the block's
// commit. A block that comes without its proof despite the grace turns it
// off for a number of blocks that doubles at each such miss. The server
// answers as soon as the proof exists, so a grace that is met costs only
// the proof's own delay. Pure: stepped by the FetchCore. thread-compatible.
type ProofGrace struct {
	grace time.Duration // the longest wait asked (0: never asked)

	on       bool
	quick    int    // proof asks answered quickly in a row, while off
	hits     int    // blocks in a row that came with their proofs, while on
	offFor   uint64 // blocks to stay off after the next miss
	offUntil uint64 // no grace for blocks below this
}

// NewProofGrace asks for at most grace (0: never).
func NewProofGrace(grace time.Duration) *ProofGrace {
	return &ProofGrace{grace: grace, offFor: graceOffMin}
}

// For is the grace a held probe for block n asks (0: none).
func (g *ProofGrace) For(n uint64) time.Duration {
	if !g.on || n < g.offUntil {
		return 0
	}
	return g.grace
}

// ProofCame: a held proof ask for block n was answered with its proof,
// took after it was sent, over a link whose round trip is rtt (0: not
// known).
func (g *ProofGrace) ProofCame(n uint64, took, rtt time.Duration) {
	if g.grace <= 0 || g.on {
		return
	}
	if took > g.grace+rtt || n < g.offUntil {
		g.quick = 0
		return
	}
	if g.quick++; g.quick >= graceQuick {
		g.on, g.quick, g.hits = true, 0, 0
	}
}

// BlockCame: a probe for block n that asked grace was answered with the
// block, with its proof or not.
func (g *ProofGrace) BlockCame(n uint64, withProof bool) {
	if !g.on {
		return
	}
	if withProof {
		if g.hits++; g.hits >= graceHits {
			g.offFor = graceOffMin
		}
		return
	}
	g.on, g.quick, g.hits = false, 0, 0
	g.offUntil = n + g.offFor
	g.offFor = min(2*g.offFor, graceOffMax)
}
