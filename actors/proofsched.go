package actors

import "time"

// ProofSchedule decides when the ProofTracker asks an upstream for the proof
// of the next unproven block, apart from any I/O. Every ask returns the
// whole block again, so asking too early wastes a block's bytes; asking too
// late leaves the proven tip behind. It learns the delay between a block's
// timestamp and its proof from the asks that found one, first asks at that
// delay, and after each miss backs off exponentially from minWait to
// maxWait. thread-compatible: owned by one actor.
type ProofSchedule struct {
	minWait, maxWait time.Duration
	est              time.Duration // learned proof delay; 0 until the first hit
	misses           int
	missAt           time.Time // when the last miss was answered
}

// NewProofSchedule returns a schedule whose retries wait between minWait and
// maxWait.
func NewProofSchedule(minWait, maxWait time.Duration) *ProofSchedule {
	return &ProofSchedule{minWait: minWait, maxWait: max(maxWait, minWait)}
}

// Next is when to ask for the proof of a block with timestamp blockTime.
func (s *ProofSchedule) Next(now, blockTime time.Time) time.Time {
	if s.misses == 0 {
		at := blockTime.Add(s.est)
		if at.Before(now) {
			return now
		}
		return at
	}
	wait := s.minWait
	for i := 1; i < s.misses && wait < s.maxWait; i++ {
		wait *= 2
	}
	return s.missAt.Add(min(wait, s.maxWait))
}

// Clear reports whether no ask has missed since the last hit: asks for
// proofs known to exist may then go at once, several at a time.
func (s *ProofSchedule) Clear() bool { return s.misses == 0 }

// Hit records that an ask at now found the proof of a block with timestamp
// blockTime. The delay observed is an upper bound of the true one (the
// proof appeared at some point since the previous miss); the estimate moves
// a quarter of the way to it, so one slow proof does not undo the rest. No
// delay past maxWait is learned: the first proof asked after a restart, of
// a block minutes old, would otherwise have every later block wait minutes
// for its first ask. (A proof asked for when known to exist teaches nothing
// of the delay at all: the ProofTracker calls Reset for it instead.)
func (s *ProofSchedule) Hit(now, blockTime time.Time) {
	d := min(max(now.Sub(blockTime), 0), s.maxWait)
	if s.est == 0 {
		s.est = d
	} else {
		s.est += (d - s.est) / 4
	}
	s.misses = 0
}

// Miss records an ask answered at now that found no proof yet.
func (s *ProofSchedule) Miss(now time.Time) { s.misses++; s.missAt = now }

// Reset forgets misses (another block is next).
func (s *ProofSchedule) Reset() { s.misses = 0 }

// Estimate is the learned proof delay.
func (s *ProofSchedule) Estimate() time.Duration { return s.est }

// ProofAsks decides which proofs the ProofTracker asks for now, looking
// from proven+1 up to committed and skipping the blocks for which skip is
// true (proof at hand, or asked). Proofs known to exist (up to known) are
// asked at once while asks keep finding them (clear), up to max asks in
// flight with the inFlight ones. Any other proof is asked one at a time, on
// the schedule: next is the block to consider for it, when nothing is in
// flight (0: none).
func ProofAsks(proven, committed, known uint64, skip func(uint64) bool, inFlight, max int, clear bool) (now []uint64, next uint64) {
	for n := proven + 1; n <= committed && inFlight+len(now) < max; n++ {
		switch {
		case skip(n):
		case n <= known && clear:
			now = append(now, n)
		case inFlight+len(now) > 0:
			return now, 0
		default:
			return now, n
		}
	}
	return now, 0
}
