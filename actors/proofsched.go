package actors

import "time"

// Tunables of the proof schedule, each with the reason for its value.
const (
	// missStepDiv: a scheduled ask that misses moves the delay up by an
	// eighth. A miss costs a block's bytes again; the retry comes an eighth
	// later, so the proven tip is late by at most that much.
	missStepDiv = 8
	// hitStepDiv: in steady state a scheduled ask that hits moves the
	// delay down by delay x streak / hitStepDiv (the streak is the hits in
	// a row): quantile tracking, an additive increase on misses against a
	// decrease on hits that grows with the streak. It settles where a miss
	// comes about once in sqrt(2 x hitStepDiv / missStepDiv) = 32 asks
	// (3% of the bytes of the blocks asked for), while a delay far too long
	// comes down within a few dozen blocks.
	hitStepDiv = 8192
	// learnStepDiv: until the first miss after learning, each hit takes an
	// eighth off: the exponential search that found the first proof can
	// overshoot the true delay by up to twice.
	learnStepDiv = 8
	// onScheduleSlack: an ask counts as made on schedule (and teaches the
	// schedule anything) if it went within this of its due time; asks made
	// later (behind earlier proofs) were bound to hit.
	onScheduleSlack = 50 * time.Millisecond
)

// ProofSchedule decides when to ask an upstream for the proof of the next
// unproven block, apart from any I/O. Nothing in the API says when a proof
// exists, and every ask returns the whole block again, so an early ask
// costs a block's bytes and a late one leaves the proven tip behind. It
// asks each block at its timestamp plus a learned delay, which tracks a
// high quantile of the proof delay: misses push it up, hits on schedule
// bring it down (see the step constants). Until a first proof is found it
// searches exponentially from minWait; after a miss it retries the same
// block at the delay's new value, but not sooner than an exponential
// backoff from minWait to maxWait (a prover that stalled is not asked at
// every round trip). thread-compatible: owned by the ProofCore.
type ProofSchedule struct {
	minWait, maxWait time.Duration
	maxDelay         time.Duration
	delay            time.Duration // ask at block time + delay, once learned
	learned, steady  bool
	streak           int // scheduled hits in a row
	misses           int // misses of the block asked now
	missAt           time.Time
}

// NewProofSchedule returns a schedule whose retries after a miss wait
// between minWait and maxWait and whose learned delay stays below maxDelay.
func NewProofSchedule(minWait, maxWait, maxDelay time.Duration) *ProofSchedule {
	return &ProofSchedule{minWait: minWait, maxWait: max(maxWait, minWait), maxDelay: max(maxDelay, minWait)}
}

// Next is when to ask for the proof of a block with timestamp blockTime.
func (s *ProofSchedule) Next(now, blockTime time.Time) time.Time {
	at := now
	if s.learned {
		at = maxTime(at, blockTime.Add(s.delay))
	}
	if s.misses > 0 {
		// Until a first proof is found the search doubles on without the
		// cap: capped, a proof 30 s behind would cost ten misses to find.
		limit := s.maxWait
		if !s.learned {
			limit = s.maxDelay
		}
		at = maxTime(at, s.missAt.Add(doubling(s.misses, s.minWait, limit)))
	}
	return at
}

// OnSchedule reports whether an ask sent at `sent` for a block with
// timestamp blockTime went when the schedule said (not later, behind other
// proofs), so that its outcome teaches the delay.
func (s *ProofSchedule) OnSchedule(sent, blockTime time.Time) bool {
	return s.learned && s.misses == 0 && sent.Sub(blockTime.Add(s.delay)) <= onScheduleSlack
}

// Hit records that an ask sent at `sent` found the proof of a block with
// timestamp blockTime; onSchedule as OnSchedule said when it was sent.
func (s *ProofSchedule) Hit(sent, blockTime time.Time, onSchedule bool) {
	d := min(max(sent.Sub(blockTime), 0), s.maxDelay)
	switch {
	case !s.learned:
		s.delay, s.learned = d, true
	case onSchedule && !s.steady:
		s.delay -= s.delay / learnStepDiv
	case onSchedule:
		s.streak++
		s.delay -= time.Duration(int64(s.delay) / hitStepDiv * int64(s.streak))
	}
	s.misses = 0
}

// Miss records an ask answered at now that found no proof yet. sent is how
// long after its block's timestamp the ask went (teaches: the block's time
// is known and the proof was not known to exist). A miss at or past the
// learned delay says the delay is too short: it moves up to past what the
// ask tried, by an eighth. Earlier asks (the first search) teach nothing.
func (s *ProofSchedule) Miss(now time.Time, sent time.Duration, teaches bool) {
	if teaches && s.learned && sent >= s.delay-onScheduleSlack {
		d := max(s.delay, sent)
		s.delay = min(d+max(d/missStepDiv, s.minWait/4), s.maxDelay)
		s.steady, s.streak = true, 0
	}
	s.misses++
	s.missAt = now
}

// Failed records an ask that got no answer: retried after the backoff,
// the delay unchanged.
func (s *ProofSchedule) Failed(now time.Time) { s.misses++; s.missAt = now }

// Clear reports whether no ask has missed since the last hit: asks for
// proofs known to exist may then go at once, several at a time.
func (s *ProofSchedule) Clear() bool { return s.misses == 0 }

// Reset forgets misses (another block is next).
func (s *ProofSchedule) Reset() { s.misses = 0 }

// Delay is the learned proof delay (0 until learned).
func (s *ProofSchedule) Delay() time.Duration { return s.delay }

// ProofAsks decides which proofs to ask for now, looking from proven+1 up
// to committed and skipping the blocks for which skip is true (proof at
// hand, or asked). Proofs known to exist (up to known) are asked at once
// while asks keep finding them (clear), up to max asks in flight with the
// inFlight ones. Any other proof is asked one at a time, on the schedule:
// next is the block to consider for it, when nothing is in flight (0: none).
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
