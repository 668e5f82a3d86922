package actors

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func testWindow(maxBlocks int, maxBytes int64, credits int) *Window {
	return NewWindow(WindowConfig{MaxBlocks: maxBlocks, MaxBytes: maxBytes, Credits: credits,
		PollInterval: 100 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: time.Second, Seed: 1}, 1)
}

func TestWindowLaunchesUpToTheBlockBound(t *testing.T) {
	w := testWindow(4, 1<<30, 8)
	if got := w.Launch(t0); len(got) != 4 || got[0] != 1 || got[3] != 4 {
		t.Fatalf("launch = %v, want 1..4", got)
	}
	if got := w.Launch(t0); len(got) != 0 {
		t.Fatalf("relaunched %v while all in flight", got)
	}
}

// TestWindowByteBound: blocks held count their size; in flight, the average.
// A run of big blocks shrinks the window; the next block always goes.
func TestWindowByteBound(t *testing.T) {
	w := testWindow(100, 1000, 100)
	got := w.Launch(t0)
	if len(got) != 1 { // 128 KiB guessed per block: only the next one fits
		t.Fatalf("launch = %v, want just the next block", got)
	}
	w.Fetched(1, 100)
	// average moved an eighth of the way from 128 KiB toward 100 B
	if _, bytes := w.Held(); bytes != 100 {
		t.Fatalf("held bytes = %d, want 100", bytes)
	}
	for range 60 { // let the average learn small blocks
		w.avgSize += (100 - w.avgSize) / 8
	}
	got = w.Launch(t0)
	if len(got) == 0 || len(got) > 9 {
		t.Fatalf("launch = %v, want at most (1000-100)/100 blocks", got)
	}
}

func TestWindowDeliversInOrderWithinCredits(t *testing.T) {
	w := testWindow(10, 1<<30, 2)
	w.Launch(t0)
	w.Fetched(2, 10)
	w.Fetched(3, 10)
	if d := w.Deliverable(); len(d) != 0 {
		t.Fatalf("delivered %v before block 1", d)
	}
	w.Fetched(1, 10)
	if d := w.Deliverable(); len(d) != 2 || d[0] != 1 || d[1] != 2 {
		t.Fatalf("deliverable = %v, want [1 2] (two credits)", d)
	}
	if d := w.Deliverable(); len(d) != 0 {
		t.Fatalf("delivered %v beyond the credits", d)
	}
	w.Acked(1)
	if d := w.Deliverable(); len(d) != 1 || d[0] != 3 {
		t.Fatalf("after an ack: %v, want [3]", d)
	}
	if w.Outstanding() != 2 {
		t.Fatalf("outstanding = %d, want 2", w.Outstanding())
	}
	w.Acked(3) // cumulative: covers 2 as well
	if w.Outstanding() != 0 {
		t.Fatalf("outstanding = %d, want 0", w.Outstanding())
	}
}

func TestWindowRetriesWithBackoff(t *testing.T) {
	w := testWindow(1, 1<<30, 8)
	w.Launch(t0)
	d1 := w.Failed(1, t0)
	if got := w.Launch(t0.Add(d1 - time.Nanosecond)); len(got) != 0 {
		t.Fatalf("retried before the backoff: %v", got)
	}
	if got := w.Launch(t0.Add(d1)); len(got) != 1 {
		t.Fatalf("not retried after the backoff")
	}
	d2 := w.Failed(1, t0)
	if d2 < d1/2 || d1 > 10*time.Millisecond || d2 > 20*time.Millisecond {
		t.Fatalf("backoffs %s then %s: want growing from 10ms with jitter", d1, d2)
	}
}

// TestWindowPollsPastTheTip: an empty answer stops fetching at and past that
// block until one probe after the poll interval; when it arrives, the
// window opens again.
func TestWindowPollsPastTheTip(t *testing.T) {
	w := testWindow(8, 1<<30, 8)
	w.Launch(t0) // 1..8
	for n := uint64(1); n <= 4; n++ {
		w.Fetched(n, 10)
	}
	w.Empty(5, t0)
	for n := uint64(6); n <= 8; n++ {
		w.Empty(n, t0)
	}
	w.Deliverable()
	if !w.CaughtUp() {
		t.Fatal("not caught up at the edge")
	}
	if got := w.Launch(t0.Add(50 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("fetched %v before the poll interval", got)
	}
	if wake, ok := w.NextWake(); !ok || !wake.Equal(t0.Add(100*time.Millisecond)) {
		t.Fatalf("next wake %s, want the probe time", wake)
	}
	got := w.Launch(t0.Add(100 * time.Millisecond))
	if len(got) != 1 || got[0] != 5 {
		t.Fatalf("probe = %v, want just [5]", got)
	}
	w.Fetched(5, 10)
	if got := w.Launch(t0.Add(100 * time.Millisecond)); len(got) == 0 || got[0] != 6 {
		t.Fatalf("window did not reopen after the probe found block 5: %v", got)
	}
}

func TestWindowResetDropsEverything(t *testing.T) {
	w := testWindow(4, 1<<30, 8)
	w.Launch(t0)
	w.Fetched(2, 10)
	w.Reset(2)
	if w.Fetched(3, 10) {
		t.Fatal("a result from before the reset was accepted")
	}
	if got := w.Launch(t0); len(got) != 4 || got[0] != 2 {
		t.Fatalf("after reset: %v, want from 2", got)
	}
}

func TestUpstreamsPick(t *testing.T) {
	c := WindowConfig{PollInterval: 100 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: time.Second, Seed: 1}
	u := NewUpstreams([]string{"a", "b"}, c, time.Minute)
	// Spread: consecutive blocks go to different upstreams.
	i1, _ := u.Pick(1, t0, "")
	i2, _ := u.Pick(2, t0, "")
	if i1 == i2 {
		t.Fatalf("blocks 1 and 2 both went to %s", u.Name(i1))
	}
	u.Done(i1)
	u.Done(i2)
	// A suspect is avoided while another will do.
	u.Suspect("a", t0)
	for n := uint64(1); n <= 4; n++ {
		i, ok := u.Pick(n, t0, "")
		if !ok || u.Name(i) != "b" {
			t.Fatalf("block %d went to %s while a is suspect", n, u.Name(i))
		}
		u.Done(i)
	}
	// A backed-off upstream is not asked; with both down, nobody is.
	u.Failed(1, t0)
	i, ok := u.Pick(1, t0, "")
	if !ok || u.Name(i) != "a" {
		t.Fatalf("with b down, want suspect a; got %v %v", ok, i)
	}
	u.Done(i)
	u.Failed(0, t0)
	if _, ok := u.Pick(1, t0, ""); ok {
		t.Fatal("picked an upstream while all are backed off")
	}
	if up := u.NextChance(1, t0); !up.After(t0) {
		t.Fatalf("next chance %s is not after now", up)
	}
	// Lacking a block: skipped until the answer goes stale.
	u2 := NewUpstreams([]string{"a", "b"}, c, time.Minute)
	u2.Lacks(0, 10, t0)
	if i, _ := u2.Pick(10, t0, ""); u2.Name(i) != "b" {
		t.Fatalf("asked a, which lacks block 10")
	}
	if u2.AllLack(10, t0) {
		t.Fatal("b was not asked yet")
	}
	u2.Lacks(1, 10, t0)
	if !u2.AllLack(10, t0) || u2.AllLack(10, t0.Add(c.PollInterval/2)) {
		t.Fatal("AllLack wrong, or never goes stale")
	}
}

func TestProofSchedule(t *testing.T) {
	s := NewProofSchedule(100*time.Millisecond, 800*time.Millisecond)
	blockTime := t0
	if got := s.Next(t0, blockTime); !got.Equal(t0) {
		t.Fatalf("first ask with nothing learned: %s, want now", got)
	}
	s.Miss(t0)
	s.Miss(t0)
	if got := s.Next(t0, blockTime); !got.Equal(t0.Add(200 * time.Millisecond)) {
		t.Fatalf("after two misses: %s, want +200ms", got)
	}
	for range 10 {
		s.Miss(t0)
	}
	if got := s.Next(t0, blockTime); !got.Equal(t0.Add(800 * time.Millisecond)) {
		t.Fatalf("backoff not capped: %s", got)
	}
	s.Hit(t0.Add(3*time.Second), blockTime)
	if s.Estimate() != 800*time.Millisecond {
		t.Fatalf("estimate %s, want 800ms: no delay beyond maxWait is learned", s.Estimate())
	}

	s = NewProofSchedule(100*time.Millisecond, 10*time.Second)
	s.Hit(t0.Add(3*time.Second), blockTime)
	if s.Estimate() != 3*time.Second {
		t.Fatalf("estimate %s, want 3s", s.Estimate())
	}
	next := t0.Add(10 * time.Second)
	if got := s.Next(next, next); !got.Equal(next.Add(3 * time.Second)) {
		t.Fatalf("next block: first ask at %s, want its time + 3s", got)
	}
	s.Hit(next.Add(7*time.Second), next)
	if s.Estimate() != 4*time.Second { // a quarter of the way from 3s to 7s
		t.Fatalf("estimate %s, want 4s", s.Estimate())
	}

	// Clear until a miss, and again after a hit: asks for proofs known to
	// exist must not pile up on an upstream that does not serve them.
	if !s.Clear() {
		t.Fatal("not clear after a hit")
	}
	s.Miss(next)
	if s.Clear() {
		t.Fatal("clear after a miss")
	}
	s.Reset()
	if !s.Clear() {
		t.Fatal("not clear after a proof was found")
	}
}

func TestRestartPolicy(t *testing.T) {
	p := RestartPolicy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Limit: 4, Window: time.Minute}
	for _, tc := range []struct {
		failures int
		delay    time.Duration
		giveUp   bool
	}{{1, 10 * time.Millisecond, false}, {2, 20 * time.Millisecond, false}, {3, 40 * time.Millisecond, false}, {4, 50 * time.Millisecond, false}, {5, 0, true}} {
		d, g := p.Decide(tc.failures)
		if d != tc.delay || g != tc.giveUp {
			t.Errorf("failures %d: got %s %v, want %s %v", tc.failures, d, g, tc.delay, tc.giveUp)
		}
	}
}

// TestWindowAckPastDelivered: after a reset, acks of an earlier round's
// deliveries move the window past them instead of being lost (which would
// leave its credits used up).
func TestWindowAckPastDelivered(t *testing.T) {
	w := testWindow(8, 1<<30, 2)
	w.Launch(t0)
	for n := uint64(1); n <= 4; n++ {
		w.Fetched(n, 10)
	}
	w.Deliverable() // 1, 2
	w.Reset(1)      // the Applier restarted; but it had applied 1 and 2
	w.Acked(2)
	if w.Next() != 3 || w.Outstanding() != 0 {
		t.Fatalf("after a late ack: next %d outstanding %d, want 3 and 0", w.Next(), w.Outstanding())
	}
	if got := w.Launch(t0); len(got) == 0 || got[0] != 3 {
		t.Fatalf("launch after a late ack = %v, want from 3", got)
	}
}

// TestWindowProbeRetriedAfterFailure: a probe of the edge that fails (the
// upstream went away while the follower was caught up) is retried after its
// backoff, not left waiting forever.
func TestWindowProbeRetriedAfterFailure(t *testing.T) {
	w := testWindow(4, 1<<30, 8)
	w.Launch(t0)
	for n := uint64(1); n <= 4; n++ {
		w.Empty(n, t0)
	}
	probeAt := t0.Add(100 * time.Millisecond)
	if got := w.Launch(probeAt); len(got) != 1 || got[0] != 1 {
		t.Fatalf("probe = %v, want [1]", got)
	}
	d := w.Failed(1, probeAt)
	if wake, ok := w.NextWake(); !ok || !wake.Equal(probeAt.Add(d)) {
		t.Fatalf("next wake %s, want the probe's retry at %s", wake, probeAt.Add(d))
	}
	if got := w.Launch(probeAt.Add(d)); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after the backoff: %v, want the probe of 1 again", got)
	}
}

// TestFailedUpstreamWhileCaughtUp: one upstream went away (backed off) and
// the other has just answered that it lacks the edge block. No upstream may
// be asked now, and the retry must fall due when one may be: when the
// backoff ends or the "lacks" answer goes stale, whichever is first. A
// healthy upstream's zero backoff once made this "never", and a caught-up
// follower stopped syncing for good when an upstream went away.
func TestFailedUpstreamWhileCaughtUp(t *testing.T) {
	c := WindowConfig{PollInterval: 100 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: time.Second, Seed: 1}
	for _, order := range [][]string{{"gone", "live"}, {"live", "gone"}} {
		u := NewUpstreams(order, c, time.Minute)
		gone, live := 0, 1
		if order[0] == "live" {
			gone, live = 1, 0
		}
		d := u.Failed(gone, t0)
		u.Lacks(live, 7, t0)
		if _, ok := u.Pick(7, t0, ""); ok {
			t.Fatalf("%v: picked an upstream though one is down and the other lacks 7", order)
		}
		want := t0.Add(min(d, c.PollInterval/2))
		if got := u.NextChance(7, t0); !got.Equal(want) {
			t.Fatalf("%v: next chance %s, want %s", order, got.Sub(t0), want.Sub(t0))
		}
		i, ok := u.Pick(7, want, "")
		if !ok {
			t.Fatalf("%v: nobody to ask at the next chance", order)
		}
		u.Done(i)

		w := NewWindow(c, 7)
		w.Launch(t0)
		w.Retry(7, u.NextChance(7, t0))
		if at, ok := w.NextWake(); !ok || !at.Equal(want) {
			t.Fatalf("%v: the retry arms no wake-up (%s, %v)", order, at, ok)
		}
	}
	// A retry due at once is still a wake-up, not "none".
	w := NewWindow(c, 1)
	w.Launch(t0)
	w.Retry(1, t0)
	if at, ok := w.NextWake(); !ok || !at.Equal(t0) {
		t.Fatalf("a retry due now arms no wake-up (%s, %v)", at, ok)
	}
}

// TestConcurrentFailuresBackOffOnce: a dropped connection fails every call
// in flight on it at once; that is one failure of the upstream, not one per
// call, or a single drop would back it off for RetryMax. A failure after
// the backoff has ended does lengthen it.
func TestConcurrentFailuresBackOffOnce(t *testing.T) {
	c := WindowConfig{RetryInitial: 100 * time.Millisecond, RetryMax: 5 * time.Second, Seed: 1}
	u := NewUpstreams([]string{"a"}, c, time.Minute)
	first := u.Failed(0, t0)
	for k := 0; k < 64; k++ {
		if d := u.Failed(0, t0.Add(time.Millisecond)); d > first {
			t.Fatalf("call %d of the same drop backed off %s, the first only %s", k, d, first)
		}
	}
	if _, ok := u.Pick(1, t0.Add(first), ""); !ok {
		t.Fatalf("upstream still backed off %s after one drop", first)
	}
	u.Done(0)
	// The second step is 2 x RetryInitial less up to half of it as jitter.
	if d := u.Failed(0, t0.Add(first)); d < c.RetryInitial {
		t.Fatalf("a failure after the backoff ended backed off only %s", d)
	}
}

// TestReconnectEndsBackoff: when an upstream's connection is back, the
// upstream may be asked at once and every block that failed on it is due
// now, however long the backoffs were; a reconnection does not lift
// suspicion, and one of an upstream that never failed changes nothing.
func TestReconnectEndsBackoff(t *testing.T) {
	c := WindowConfig{MaxBlocks: 4, MaxBytes: 1 << 30, Credits: 4, PollInterval: 100 * time.Millisecond,
		RetryInitial: time.Minute, RetryMax: time.Hour, Seed: 1}
	u := NewUpstreams([]string{"a"}, c, time.Hour)
	if u.Reconnected(0) {
		t.Fatal("a first connection reported as coming back from a failure")
	}
	w := NewWindow(c, 1)
	launched := w.Launch(t0)
	if len(launched) != 4 {
		t.Fatalf("launched %v, want 4 blocks", launched)
	}
	u.Failed(0, t0)
	u.Failed(0, u.NextChance(1, t0)) // a second drop: minutes of backoff
	for _, n := range launched {
		w.Failed(n, t0)
	}
	later := t0.Add(time.Second)
	if _, ok := u.Pick(1, later, ""); ok {
		t.Fatal("upstream asked a second into a minute's backoff")
	}
	if got := w.Launch(later); len(got) != 0 {
		t.Fatalf("blocks %v relaunched a second into a minute's backoff", got)
	}
	if !u.Reconnected(0) {
		t.Fatal("a reconnection after failures not reported")
	}
	w.RetryNow(later)
	if at, ok := w.NextWake(); !ok || at.After(later) {
		t.Fatalf("after the reconnection the next retry is at %s, want now", at.Sub(t0))
	}
	if got := w.Launch(later); len(got) != 4 {
		t.Fatalf("after the reconnection relaunched %v, want all 4", got)
	}
	if _, ok := u.Pick(1, later, ""); !ok {
		t.Fatal("the reconnected upstream is not asked")
	}

	// Suspicion stays: of a trusted and a suspect upstream, the trusted
	// one is asked first even after the suspect one reconnected.
	v := NewUpstreams([]string{"suspect", "trusted"}, c, time.Hour)
	v.Suspect("suspect", t0)
	v.Failed(0, t0)
	v.Reconnected(0)
	for n := range uint64(4) {
		i, ok := v.Pick(n, later, "")
		if !ok {
			t.Fatalf("block %d: no upstream to ask", n)
		}
		if v.Name(i) != "trusted" {
			t.Fatalf("block %d: picked %q, want the trusted upstream", n, v.Name(i))
		}
		v.Done(i)
	}
}

// TestUpstreamNotes: the status page shows only what still holds: a
// backoff or a suspicion that has ended drops out, a problem stays until
// the upstream answers well, and an upstream with nothing left is not listed.
func TestUpstreamNotes(t *testing.T) {
	var n notes
	n.problem("a", "refused", t0.Add(time.Second))
	n.suspect("b", "bad block 7", t0.Add(time.Minute))
	if got := n.at(t0); len(got) != 2 || got["a"].Problem != "refused" || got["b"].Suspect != "bad block 7" {
		t.Fatalf("at the start: %+v", got)
	}
	got := n.at(t0.Add(2 * time.Second))
	if a := got["a"]; a.Problem != "refused" || !a.BackedOffUntil.IsZero() {
		t.Fatalf("a after its backoff: %+v, want the problem and no backoff", a)
	}
	n.recovered("a")
	if _, ok := n.at(t0)["a"]; ok {
		t.Fatal("a listed after it answered well")
	}
	if got := n.at(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("after every suspicion ended: %+v, want nothing", got)
	}
}

// TestSlowLinkLimit: on a link too slow for the whole window, calls that
// time out together cut the calls allowed in flight once, to 1; it grows
// back by one per block below the threshold (half what was in flight) and
// more slowly above it; a call slow but in time halves it; and while the
// limit is reached nothing launches and no timer spins on due retries.
func TestSlowLinkLimit(t *testing.T) {
	c := WindowConfig{MaxBlocks: 8, MaxBytes: 1 << 30, Credits: 8, PollInterval: 100 * time.Millisecond,
		RetryInitial: time.Millisecond, RetryMax: time.Millisecond, Seed: 1}
	w := NewWindow(c, 1)
	first := w.Launch(t0)
	if len(first) != 8 || w.Limit() != 8 {
		t.Fatalf("launched %v with limit %d, want 8 and 8", first, w.Limit())
	}
	later := t0.Add(10 * time.Second)
	for _, n := range first {
		w.TimedOut(n, later) // one overloaded window: one cut
	}
	if w.Limit() != 1 || w.threshold != 4 {
		t.Fatalf("after a window of timeouts: limit %d threshold %d, want 1 and 4", w.Limit(), w.threshold)
	}
	retry := later.Add(time.Second)
	got := w.Launch(retry)
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("relaunched %v, want block 1 alone", got)
	}
	if more := w.Launch(retry); len(more) != 0 {
		t.Fatalf("launched %v beyond the limit", more)
	}
	if at, ok := w.NextWake(); ok {
		t.Fatalf("a wake-up at %s while the limit is reached: it would spin", at.Sub(t0))
	}
	// Slow start: 1, 2, 3, 4 as blocks arrive, then one more per 4 blocks.
	n := uint64(1)
	for want := 2; want <= 4; want++ {
		w.Fetched(n, 1000)
		n++
		if w.Limit() != want {
			t.Fatalf("after block %d: limit %d, want %d", n-1, w.Limit(), want)
		}
		w.Launch(retry)
	}
	for k := range 4 {
		if w.Limit() != 4 {
			t.Fatalf("above the threshold the limit grew after %d blocks", k)
		}
		w.Fetched(n, 1000)
		n++
		w.Launch(retry)
	}
	if w.Limit() != 5 {
		t.Fatalf("after 4 more blocks: limit %d, want 5", w.Limit())
	}
	// A call slow but in time halves what is in flight.
	flying := w.count(inFlight)
	var slow uint64
	for m, sl := range w.slots {
		if sl.state == inFlight {
			slow = m
			break
		}
	}
	w.Slow(slow, retry.Add(time.Second))
	if want := max(1, flying/2); w.Limit() != want {
		t.Fatalf("after a slow call with %d in flight: limit %d, want %d", flying, w.Limit(), want)
	}
}

// TestProofAsks: proofs known to exist upstream are asked several at once,
// up to the bound, skipping those at hand or asked; others one at a time on
// the schedule, and only with nothing in flight; after a miss, known proofs
// go back to the schedule too.
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
		{"not committed yet: nothing", 20, 20, 30, none, 0, true, nil, 0},
	} {
		now, next := ProofAsks(tc.proven, tc.committed, tc.known, tc.skip, tc.inFlight, 4, tc.clear)
		if !slices.Equal(now, tc.wantNow) || next != tc.wantNext {
			t.Errorf("%s: asks %v now and %d on the schedule, want %v and %d", tc.name, now, next, tc.wantNow, tc.wantNext)
		}
	}
}
