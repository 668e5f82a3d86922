package actors

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

const (
	testMinWait  = 100 * time.Millisecond
	testMaxWait  = 800 * time.Millisecond
	testMaxDelay = 10 * time.Second
)

// TestProofScheduleBackoff: with nothing learned the first ask goes at
// once; after misses the waits double from MinWait, capped at MaxDelay
// while no proof was ever found (the first search) and at MaxWait once the
// delay is learned; failed asks back off the same way.
func TestProofScheduleBackoff(t *testing.T) {
	for _, tc := range []struct {
		learned bool
		misses  int
		fail    bool // Failed instead of Miss
		want    time.Duration
	}{
		{false, 0, false, 0},
		{false, 1, false, 100 * time.Millisecond},
		{false, 2, false, 200 * time.Millisecond},
		{false, 3, false, 400 * time.Millisecond},
		{false, 4, false, 800 * time.Millisecond},
		{false, 5, false, 1600 * time.Millisecond},
		{false, 12, false, testMaxDelay},
		{false, 1, true, 100 * time.Millisecond},
		{false, 3, true, 400 * time.Millisecond},
		{true, 0, false, 0},
		{true, 1, false, 100 * time.Millisecond},
		{true, 4, false, 800 * time.Millisecond},
		{true, 5, false, testMaxWait},
		{true, 12, false, testMaxWait},
		{true, 5, true, testMaxWait},
	} {
		s := NewProofSchedule(testMinWait, testMaxWait, testMaxDelay)
		if tc.learned {
			s.Hit(t0, t0, false) // delay 0
		}
		for range tc.misses {
			if tc.fail {
				s.Failed(t0)
			} else {
				s.Miss(t0, 0, false)
			}
		}
		if got := s.Next(t0, t0); got.Sub(t0) != tc.want {
			t.Errorf("learned %v, after %d misses (failed %v): next ask at +%s, want +%s", tc.learned, tc.misses, tc.fail, got.Sub(t0), tc.want)
		}
		if s.Clear() != (tc.misses == 0) {
			t.Errorf("after %d misses: clear %v", tc.misses, s.Clear())
		}
		if s.Delay() != 0 {
			t.Errorf("after %d misses: a delay %s learned without a hit", tc.misses, s.Delay())
		}
	}
	// Later asks are never before now.
	s := NewProofSchedule(testMinWait, testMaxWait, testMaxDelay)
	s.Miss(t0, 0, false)
	if later := t0.Add(time.Second); !s.Next(later, t0).Equal(later) {
		t.Fatal("next ask in the past")
	}
}

// TestProofScheduleLearns: the first hit sets the delay (capped at
// MaxDelay); while learning, hits on schedule take an eighth off; a miss
// on schedule adds an eighth and turns the schedule steady; steady hits
// take off delay x streak / hitStepDiv, slowly; asks off schedule teach
// nothing.
func TestProofScheduleLearns(t *testing.T) {
	bt := t0 // block time
	at := func(d time.Duration) time.Time { return bt.Add(d) }

	capped := NewProofSchedule(testMinWait, testMaxWait, testMaxDelay)
	capped.Hit(at(time.Minute), bt, false)
	if capped.Delay() != testMaxDelay {
		t.Fatalf("delay %s, want MaxDelay: no delay beyond it is learned", capped.Delay())
	}

	s := NewProofSchedule(testMinWait, testMaxWait, testMaxDelay)
	s.Miss(at(time.Second), time.Second, true) // the first search teaches nothing
	if s.Delay() != 0 {
		t.Fatalf("delay %s learned from a miss", s.Delay())
	}
	s.Hit(at(3*time.Second), bt, false)
	d := 3 * time.Second
	if s.Delay() != d || !s.Clear() {
		t.Fatalf("after the first hit: delay %s clear %v, want 3s and clear", s.Delay(), s.Clear())
	}
	next := t0.Add(10 * time.Second) // the next block
	if got := s.Next(next, next); !got.Equal(next.Add(d)) {
		t.Fatalf("next block: first ask at %s, want its time + 3s", got.Sub(next))
	}
	for _, tc := range []struct {
		sent time.Duration // after the due time
		want bool
	}{{-time.Second, true}, {0, true}, {onScheduleSlack, true}, {onScheduleSlack + time.Millisecond, false}} {
		if got := s.OnSchedule(next.Add(d+tc.sent), next); got != tc.want {
			t.Errorf("sent %s after due: on schedule %v, want %v", tc.sent, got, tc.want)
		}
	}

	// Each step asks a new block `sent` after its time (relative to the
	// delay before the step).
	steps := []struct {
		name       string
		hit        bool
		onSchedule bool          // a hit's onSchedule; a miss's teaches
		late       time.Duration // sent = delay + late
		want       func(d, sent time.Duration) time.Duration
	}{
		{"learning hit", true, true, 0, func(d, _ time.Duration) time.Duration { return d - d/learnStepDiv }},
		{"learning hit again", true, true, 0, func(d, _ time.Duration) time.Duration { return d - d/learnStepDiv }},
		{"hit off schedule", true, false, time.Second, func(d, _ time.Duration) time.Duration { return d }},
		{"miss that teaches nothing", false, false, 0, func(d, _ time.Duration) time.Duration { return d }},
		{"hit after a miss", true, false, 0, func(d, _ time.Duration) time.Duration { return d }},
		{"miss well before the delay", false, true, -time.Second, func(d, _ time.Duration) time.Duration { return d }},
		{"hit", true, false, 0, func(d, _ time.Duration) time.Duration { return d }},
		{"miss on schedule", false, true, 0, func(d, _ time.Duration) time.Duration { return d + d/missStepDiv }},
		{"steady hit", true, true, 0, func(d, _ time.Duration) time.Duration { return d - time.Duration(int64(d)/hitStepDiv) }},
		{"steady hit, streak 2", true, true, 0, func(d, _ time.Duration) time.Duration { return d - time.Duration(int64(d)/hitStepDiv*2) }},
		{"steady hit, streak 3", true, true, 0, func(d, _ time.Duration) time.Duration { return d - time.Duration(int64(d)/hitStepDiv*3) }},
		{"steady miss", false, true, 0, func(d, _ time.Duration) time.Duration { return d + d/missStepDiv }},
		{"steady hit, streak 1 again", true, true, 0, func(d, _ time.Duration) time.Duration { return d - time.Duration(int64(d)/hitStepDiv) }},
		{"miss past the delay: up past it", false, true, time.Second, func(_, sent time.Duration) time.Duration { return sent + sent/missStepDiv }},
	}
	for k, st := range steps {
		before := s.Delay()
		sent := before + st.late
		b := next.Add(time.Duration(k+1) * 10 * time.Second)
		if st.hit {
			s.Hit(b.Add(sent), b, st.onSchedule)
		} else {
			s.Miss(b.Add(sent), sent, st.onSchedule)
		}
		if got, want := s.Delay(), st.want(before, sent); got != want {
			t.Fatalf("%s: delay %s -> %s, want %s", st.name, before, got, want)
		}
		if s.Clear() != st.hit {
			t.Fatalf("%s: clear %v", st.name, s.Clear())
		}
	}
	// Steady hits bring it down slowly: far less than learning hits.
	d = s.Delay()
	for k := range 10 {
		b := next.Add(time.Duration(100+k) * 10 * time.Second)
		s.Hit(b.Add(s.Delay()), b, true)
	}
	if s.Delay() >= d || s.Delay() < d-d/learnStepDiv {
		t.Fatalf("ten steady hits took the delay from %s to %s", d, s.Delay())
	}

	// A miss moves a tiny delay by at least MinWait/4, and never past
	// MaxDelay.
	s = NewProofSchedule(testMinWait, testMaxWait, testMaxDelay)
	s.Hit(bt, bt, false)
	s.Miss(bt, 0, true)
	if s.Delay() != testMinWait/4 {
		t.Fatalf("delay %s after a miss from 0, want MinWait/4", s.Delay())
	}
	s = NewProofSchedule(testMinWait, testMaxWait, testMaxDelay)
	s.Hit(at(testMaxDelay), bt, false)
	s.Miss(at(testMaxDelay), testMaxDelay, true)
	if s.Delay() != testMaxDelay {
		t.Fatalf("delay %s after a miss at MaxDelay", s.Delay())
	}
	// After a miss the same block is retried at the delay's new value,
	// but not before the backoff.
	for _, tc := range []struct {
		name  string
		delay time.Duration // learned
		want  time.Duration // the retry, after the block time
	}{
		{"the new delay", time.Second, time.Second + time.Second/missStepDiv},
		{"the backoff", 10 * time.Millisecond, 10*time.Millisecond + testMinWait},
	} {
		s = NewProofSchedule(testMinWait, testMaxWait, testMaxDelay)
		s.Hit(at(tc.delay), bt, false)
		b := t0.Add(time.Minute)
		s.Miss(b.Add(tc.delay), tc.delay, true)
		if got := s.Next(b.Add(tc.delay), b); got.Sub(b) != tc.want {
			t.Errorf("%s: retry after a miss at +%s, want +%s", tc.name, got.Sub(b), tc.want)
		}
		if s.OnSchedule(b.Add(s.Delay()), b) {
			t.Errorf("%s: a retry after a miss counts as on schedule", tc.name)
		}
		s.Reset()
		if got := s.Next(b, b); !got.Equal(b.Add(s.Delay())) {
			t.Errorf("%s: after a reset: next ask at +%s, want +%s", tc.name, got.Sub(b), s.Delay())
		}
	}
}

// TestProofAsks: proofs known to exist upstream are asked several at
// once, up to the bound, skipping those at hand or asked; others one at a
// time on the schedule, and only with nothing in flight; after a miss,
// known proofs go back to the schedule too.
func TestProofAsks(t *testing.T) {
	none := func(uint64) bool { return false }
	for _, tc := range []struct {
		name                     string
		proven, committed, known uint64
		skip                     func(uint64) bool
		inFlight                 int
		clear                    bool
		wantNow                  []uint64
		wantNext                 uint64
	}{
		{"known: the bound at once", 0, 20, 10, none, 0, true, []uint64{1, 2, 3, 4}, 0},
		{"known, some in flight", 0, 20, 10, none, 3, true, []uint64{1}, 0},
		{"known, at hand skipped", 0, 20, 10, func(n uint64) bool { return n <= 2 }, 0, true, []uint64{3, 4, 5, 6}, 0},
		{"known ones end: the next waits", 0, 20, 2, none, 0, true, []uint64{1, 2}, 0},
		{"none known: the first on the schedule", 5, 20, 3, none, 0, true, nil, 6},
		{"none known, one in flight", 5, 20, 3, func(n uint64) bool { return n == 6 }, 1, true, nil, 0},
		{"after a miss: the schedule", 0, 20, 10, none, 0, false, nil, 1},
		{"after a miss, one in flight", 0, 20, 10, func(n uint64) bool { return n == 1 }, 1, false, nil, 0},
		{"not committed yet: nothing", 20, 20, 30, none, 0, true, nil, 0},
		{"known past committed: up to committed", 0, 2, 30, none, 0, true, []uint64{1, 2}, 0},
		{"bound reached", 0, 20, 10, none, 4, true, nil, 0},
	} {
		now, next := ProofAsks(tc.proven, tc.committed, tc.known, tc.skip, tc.inFlight, 4, tc.clear)
		if !slices.Equal(now, tc.wantNow) || next != tc.wantNext {
			t.Errorf("%s: asks %v now and %d on the schedule, want %v and %d", tc.name, now, next, tc.wantNow, tc.wantNext)
		}
	}
}

func testProofConfig() ProofConfig {
	return ProofConfig{MinWait: testMinWait, MaxWait: testMaxWait, MaxDelay: testMaxDelay, AskTimeout: 2 * time.Second}
}

// proofSim steps a ProofCore and collects its effects.
type proofSim struct {
	t      *testing.T
	p      *ProofCore
	now    time.Time
	wants  []ProofWant
	apply  *ProofBatch
	proven uint64
	wake   time.Time
	logs   []LogLine
}

func newProofSim(t *testing.T, committed, proven uint64, times map[uint64]time.Time) *proofSim {
	return &proofSim{t: t, p: NewProofCore(testProofConfig(), committed, proven, times), now: t0}
}

// step applies ev at d after t0 and returns the wants of this step.
func (s *proofSim) step(d time.Duration, ev any) []ProofWant {
	s.now = t0.Add(d)
	s.p.Step(s.now, ev)
	r := s.p.Ready()
	wants := slices.Clone(r.Wants)
	s.wants = append(s.wants, wants...)
	if r.Apply != nil {
		if s.apply != nil {
			s.t.Fatalf("at %s: a second batch while one is out", d)
		}
		s.apply = r.Apply
	}
	if r.Proven != 0 {
		s.proven = r.Proven
	}
	if !r.WakeAt.IsZero() {
		s.wake = r.WakeAt
	}
	s.logs = append(s.logs, r.Logs...)
	return wants
}

// applied reports the batch out as applied with err.
func (s *proofSim) applied(d time.Duration, err error) {
	b := s.apply
	if b == nil {
		s.t.Fatal("no batch out")
	}
	s.apply = nil
	s.step(d, ProofsApplied{First: b.First, Count: len(b.Proofs), Err: err, BadProof: err != nil})
}

func batch(first uint64, proofs ...any) *ProofBatch { return &ProofBatch{First: first, Proofs: proofs} }

func sameBatch(a, b *ProofBatch) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.First == b.First && slices.Equal(a.Proofs, b.Proofs)
}

// TestProofCoreAppliesProofsThatCame: proofs that came with blocks are
// applied in one batch once the oldest has waited proofBatchWait (longer,
// proofBatchWaitBehind, while proofs of blocks not yet committed are at
// hand); the batch's success moves the proven tip.
func TestProofCoreAppliesProofsThatCame(t *testing.T) {
	s := newProofSim(t, 0, 0, nil)
	s.step(0, ProofCame{N: 1, Proof: "p1"})
	s.step(0, ProofCame{N: 2, Proof: "p2"})
	s.step(0, Committed{N: 1, Time: t0})
	s.step(0, Committed{N: 2, Time: t0})
	if len(s.wants) != 0 {
		t.Fatalf("asked %+v for proofs at hand", s.wants)
	}
	if s.apply != nil || !s.wake.Equal(t0.Add(proofBatchWait)) {
		t.Fatalf("batch %+v at once, wake %s: want none, a wake-up at +%s", s.apply, s.wake.Sub(t0), proofBatchWait)
	}
	s.step(proofBatchWait-time.Nanosecond, Tick{})
	if s.apply != nil {
		t.Fatal("batch before proofBatchWait")
	}
	s.step(proofBatchWait, Tick{})
	if !sameBatch(s.apply, batch(1, "p1", "p2")) {
		t.Fatalf("batch %+v, want 1 and 2 in one", s.apply)
	}
	s.step(proofBatchWait, Tick{}) // nothing more while it is out
	if s.proven != 0 || s.p.Proven() != 0 {
		t.Fatal("proven before the batch was applied")
	}
	s.applied(proofBatchWait+time.Millisecond, nil)
	if s.proven != 2 || s.p.Proven() != 2 {
		t.Fatalf("proven %d (ready %d), want 2", s.p.Proven(), s.proven)
	}

	// Behind: a proof of a block not yet committed is at hand, more are
	// about to come; the batch waits longer, and takes the committed ones.
	s = newProofSim(t, 0, 0, nil)
	s.step(0, ProofCame{N: 1, Proof: "p1"})
	s.step(0, ProofCame{N: 2, Proof: "p2"})
	s.step(0, Committed{N: 1, Time: t0})
	s.step(proofBatchWait, Tick{})
	if s.apply != nil {
		t.Fatal("batch after proofBatchWait with more proofs behind")
	}
	s.step(proofBatchWaitBehind, Tick{})
	if !sameBatch(s.apply, batch(1, "p1")) {
		t.Fatalf("batch %+v, want the committed one alone", s.apply)
	}

	// A full batch goes at once.
	s = newProofSim(t, 0, 0, nil)
	for n := uint64(1); n <= proofBatchMax; n++ {
		s.step(0, ProofCame{N: n, Proof: n})
	}
	s.step(0, Committed{N: proofBatchMax, Time: t0})
	if s.apply == nil || len(s.apply.Proofs) != proofBatchMax {
		t.Fatalf("a full batch did not go at once: %+v", s.apply)
	}
	// A proof of a block already proven is dropped.
	s = newProofSim(t, 5, 5, nil)
	s.step(0, ProofCame{N: 3, Proof: "p3"})
	s.step(time.Second, Tick{})
	if s.apply != nil {
		t.Fatalf("applied %+v, a proof of a proven block", s.apply)
	}
}

// TestProofCoreFailedBatch: a batch that fails is applied again one proof
// at a time, to find the bad one; the bad one is dropped, logged and asked
// again, known to exist.
func TestProofCoreFailedBatch(t *testing.T) {
	s := newProofSim(t, 0, 0, nil)
	for n := uint64(1); n <= 3; n++ {
		s.step(0, ProofCame{N: n, Proof: fmt.Sprint("p", n)})
	}
	s.step(0, Committed{N: 3, Time: t0})
	s.step(proofBatchWait, Tick{})
	s.applied(proofBatchWait, errors.New("bad proof"))
	if !sameBatch(s.apply, batch(1, "p1")) {
		t.Fatalf("after a failed batch: %+v, want 1 alone at once", s.apply)
	}
	s.applied(proofBatchWait, errors.New("bad proof"))
	if len(s.logs) != 1 || s.logs[0].N != 1 || !s.logs[0].Warn {
		t.Fatalf("logs %+v, want block 1's proof rejected", s.logs)
	}
	if !slices.Contains(s.wants, ProofWant{N: 1, Known: true}) {
		t.Fatalf("wants %+v, want the proof of 1 asked again, known", s.wants)
	}
	s.step(proofBatchWait, ProofAnswer{N: 1, Known: true, Outcome: Served, Proof: "p1 good"})
	s.step(2*proofBatchWait, Tick{})
	if !sameBatch(s.apply, batch(1, "p1 good")) {
		t.Fatalf("batch %+v, want the good proof of 1 alone (one at a time after a failure)", s.apply)
	}
	s.applied(2*proofBatchWait, nil)
	s.step(3*proofBatchWait, Tick{})
	if !sameBatch(s.apply, batch(2, "p2", "p3")) {
		t.Fatalf("batch %+v, want 2 and 3 together again", s.apply)
	}
	s.applied(3*proofBatchWait, nil)
	if s.proven != 3 {
		t.Fatalf("proven %d, want 3", s.proven)
	}

	// The store moved on (the batch was out of order): follow it.
	s = newProofSim(t, 10, 0, nil)
	s.step(0, ProofCame{N: 1, Proof: "p1"})
	s.step(proofBatchWait, Tick{})
	s.apply = nil
	s.step(proofBatchWait, ProofsApplied{First: 1, Count: 1, Err: errors.New("order"), OrderProven: 7})
	if s.proven != 7 || s.p.Proven() != 7 {
		t.Fatalf("proven %d, want the store's 7", s.p.Proven())
	}
}

// TestProofCoreAsksKnownProofsAtOnce: proofs known to exist (a later one
// was seen) are asked several at once, up to proofAsksMax in flight; a
// known ask that finds none sends the rest back to the schedule.
func TestProofCoreAsksKnownProofsAtOnce(t *testing.T) {
	times := map[uint64]time.Time{}
	for n := uint64(1); n <= 20; n++ {
		times[n] = t0
	}
	s := newProofSim(t, 20, 0, times)
	wants := s.step(0, ProofCame{N: 20, Proof: "p20"})
	var want []ProofWant
	for n := uint64(1); n <= proofAsksMax; n++ {
		want = append(want, ProofWant{N: n, Known: true})
	}
	if !slices.Equal(wants, want) {
		t.Fatalf("wants %+v, want 1..%d known", wants, proofAsksMax)
	}
	wants = s.step(time.Millisecond, ProofAnswer{N: 1, Known: true, Outcome: Served, Proof: "p1"})
	if !slices.Equal(wants, []ProofWant{{N: proofAsksMax + 1, Known: true}}) {
		t.Fatalf("after one answer: wants %+v, want the next known one", wants)
	}
	wants = s.step(2*time.Millisecond, ProofAnswer{N: 2, Known: true, Outcome: Empty})
	if len(wants) != 0 {
		t.Fatalf("after a known ask found none: wants %+v, want none until the asks in flight end", wants)
	}
	if s.p.Schedule().Clear() {
		t.Fatal("the schedule is clear after a miss")
	}
}

// TestProofCoreSchedule: with nothing learned the first proof is asked at
// once; after a miss, after MinWait; the hit teaches the delay, and the
// next block is asked at its time plus the delay.
func TestProofCoreSchedule(t *testing.T) {
	s := newProofSim(t, 1, 0, map[uint64]time.Time{1: t0})
	if wants := s.step(0, Tick{}); !slices.Equal(wants, []ProofWant{{N: 1}}) {
		t.Fatalf("wants %+v, want 1 at once", wants)
	}
	s.wake = time.Time{}
	if wants := s.step(10*time.Millisecond, ProofAnswer{N: 1, Outcome: Empty}); len(wants) != 0 {
		t.Fatalf("asked %+v again at once after a miss", wants)
	}
	if want := t0.Add(10*time.Millisecond + testMinWait); !s.wake.Equal(want) {
		t.Fatalf("wake at %s, want +%s", s.wake.Sub(t0), want.Sub(t0))
	}
	if wants := s.step(110*time.Millisecond, Tick{}); !slices.Equal(wants, []ProofWant{{N: 1}}) {
		t.Fatalf("wants %+v at the retry", wants)
	}
	s.step(120*time.Millisecond, ProofAnswer{N: 1, Outcome: Served, Proof: "p1"})
	if d := s.p.Schedule().Delay(); d != 110*time.Millisecond {
		t.Fatalf("delay %s, want the 110ms after its block time the ask went", d)
	}
	s.step(200*time.Millisecond, Tick{})
	s.applied(200*time.Millisecond, nil)
	bt := t0.Add(time.Second)
	if wants := s.step(1050*time.Millisecond, Committed{N: 2, Time: bt}); len(wants) != 0 {
		t.Fatalf("wants %+v before block 2's time + the delay", wants)
	}
	if !s.wake.Equal(bt.Add(110 * time.Millisecond)) {
		t.Fatalf("wake at %s, want block 2's time + 110ms", s.wake.Sub(t0))
	}
	if wants := s.step(1110*time.Millisecond, Tick{}); !slices.Equal(wants, []ProofWant{{N: 2}}) {
		t.Fatalf("wants %+v at the schedule", wants)
	}
}

// TestProofCoreAskTimeout: an ask with no answer after AskTimeout (the
// Fetcher lost it) is dropped and asked again after the backoff; a late
// answer to it is ignored.
func TestProofCoreAskTimeout(t *testing.T) {
	s := newProofSim(t, 1, 0, map[uint64]time.Time{1: t0})
	s.step(0, Tick{})
	timeout := testProofConfig().AskTimeout
	if !s.wake.Equal(t0.Add(timeout)) {
		t.Fatalf("wake at %s, want the ask's timeout", s.wake.Sub(t0))
	}
	if wants := s.step(timeout-time.Nanosecond, Tick{}); len(wants) != 0 {
		t.Fatalf("asked again %+v before the timeout", wants)
	}
	if wants := s.step(timeout, Tick{}); len(wants) != 0 {
		t.Fatalf("asked again %+v at once at the timeout, want after the backoff", wants)
	}
	s.step(timeout+time.Millisecond, ProofAnswer{N: 1, Outcome: Served, Proof: "late"})
	s.step(timeout+proofBatchWait+time.Millisecond, Tick{})
	if s.apply != nil {
		t.Fatal("a late answer to a dropped ask was taken")
	}
	if !s.wake.Equal(t0.Add(timeout + testMinWait)) {
		t.Fatalf("wake at %s, want the backoff after the timeout", s.wake.Sub(t0))
	}
	if wants := s.step(timeout+testMinWait, Tick{}); !slices.Equal(wants, []ProofWant{{N: 1}}) {
		t.Fatalf("wants %+v, want 1 asked again", wants)
	}
}

// TestProofCoreUnansweredIsNoMiss: an ask that got no word on whether the
// proof exists (failed, block missing there, a forged proof) backs off
// but teaches the delay nothing.
func TestProofCoreUnansweredIsNoMiss(t *testing.T) {
	for _, a := range []ProofAnswer{
		{N: 2, Outcome: Failed},
		{N: 2, Outcome: Empty},
		{N: 2, Outcome: Served, BadProof: "forged"},
	} {
		s := newProofSim(t, 1, 0, map[uint64]time.Time{1: t0})
		s.step(0, Tick{})
		s.step(time.Second, ProofAnswer{N: 1, Outcome: Served, Proof: "p1"}) // delay 0
		s.step(time.Second+proofBatchWait, Tick{})
		s.applied(time.Second+proofBatchWait, nil)
		s.step(2*time.Second, Committed{N: 2, Time: t0.Add(2 * time.Second)})
		if !slices.Contains(s.wants, ProofWant{N: 2}) {
			t.Fatalf("%+v: 2 not asked", a)
		}
		d := s.p.Schedule().Delay()
		s.step(2*time.Second+10*time.Millisecond, a)
		if s.p.Schedule().Delay() != d || s.p.Schedule().Clear() {
			t.Errorf("%+v: delay %s -> %s, clear %v; want it unchanged, backing off", a, d, s.p.Schedule().Delay(), s.p.Schedule().Clear())
		}
	}
}

// TestProofCoreAsksLost: when the Fetcher restarts, the asks it held are
// asked again at once, not after AskTimeout.
func TestProofCoreAsksLost(t *testing.T) {
	p := NewProofCore(ProofConfig{MinWait: 100 * time.Millisecond, MaxWait: time.Second, MaxDelay: time.Minute, AskTimeout: time.Minute}, 0, 0, nil)
	p.Step(t0, Committed{N: 1, Time: t0})
	if r := p.Ready(); len(r.Wants) != 1 || r.Wants[0].N != 1 {
		t.Fatalf("first ask: %+v", r.Wants)
	}
	later := t0.Add(time.Second)
	p.Step(later, Tick{})
	if r := p.Ready(); len(r.Wants) != 0 {
		t.Fatalf("asked again while the ask is in flight: %+v", r.Wants)
	}
	p.Step(later, AsksLost{})
	if r := p.Ready(); len(r.Wants) != 1 || r.Wants[0].N != 1 {
		t.Fatalf("after the asks were lost: %+v, want block 1 asked again", r.Wants)
	}
}
