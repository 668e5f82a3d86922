package actors

import (
	"slices"
	"testing"
	"time"
)

// t0 is the start of every test's simulated time.
var t0 = time.Unix(1_700_000_000, 0)

const testPoll = 100 * time.Millisecond

func testWindowConfig(maxBlocks int, maxBytes int64, credits int) WindowConfig {
	return WindowConfig{MaxBlocks: maxBlocks, MaxBytes: maxBytes, Credits: credits,
		PollInterval: testPoll, RetryInitial: 10 * time.Millisecond, RetryMax: time.Second, Seed: 1}
}

// winDriver plays the FetchCore's part for a Window alone: it starts every
// block the window offers (or answers what answer says) and remembers the
// id of each block's call.
type winDriver struct {
	w      *Window
	lastID uint64
	ids    map[uint64]uint64 // block -> its last call's id
	// answer, if set, decides what to answer for a block instead of
	// starting it.
	answer func(n uint64, probe bool) pick
}

func newWinDriver(c WindowConfig, next uint64) *winDriver {
	return &winDriver{w: NewWindow(c, next), ids: map[uint64]uint64{}}
}

type launched struct {
	n     uint64
	probe bool
}

// launch runs Launch at now and returns the blocks started, in order.
func (d *winDriver) launch(now time.Time) []uint64 {
	var got []uint64
	for _, l := range d.launchProbes(now) {
		got = append(got, l.n)
	}
	return got
}

func (d *winDriver) launchProbes(now time.Time) []launched {
	var got []launched
	d.w.Launch(now, func(n uint64, probe bool) pick {
		if d.answer != nil {
			if p := d.answer(n, probe); !p.started {
				return p
			}
		}
		d.lastID++
		d.ids[n] = d.lastID
		got = append(got, launched{n, probe})
		return pick{id: d.lastID, started: true}
	})
	return got
}

func (d *winDriver) fetched(n uint64, size int, now time.Time) bool {
	_, ok := d.w.Fetched(n, d.ids[n], size, 0, time.Time{}, n, now)
	return ok
}

func (d *winDriver) fetchedAt(n uint64, blockTime, now time.Time) bool {
	_, ok := d.w.Fetched(n, d.ids[n], 10, 0, blockTime, n, now)
	return ok
}

func delivered(ds []Delivery) []uint64 {
	var ns []uint64
	for _, d := range ds {
		ns = append(ns, d.N)
	}
	return ns
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for n := from; n <= to; n++ {
		s = append(s, n)
	}
	return s
}

func TestWindowLaunchesUpToTheBlockBound(t *testing.T) {
	d := newWinDriver(testWindowConfig(4, 1<<30, 8), 1)
	if got := d.launch(t0); !slices.Equal(got, seq(1, 4)) {
		t.Fatalf("launch = %v, want 1..4", got)
	}
	if got := d.launch(t0); len(got) != 0 {
		t.Fatalf("relaunched %v while all in flight", got)
	}
	if blocks, _ := d.w.Held(); blocks != 4 {
		t.Fatalf("held %d blocks, want 4", blocks)
	}
}

// TestWindowByteBound: blocks held count their size; in flight, the
// running average. A run of big blocks shrinks the window; the next block
// always goes, whatever its size; a retry goes even when the window is full.
func TestWindowByteBound(t *testing.T) {
	d := newWinDriver(testWindowConfig(100, 1000, 100), 1)
	if got := d.launch(t0); !slices.Equal(got, []uint64{1}) { // 128 KiB guessed per block
		t.Fatalf("launch = %v, want just the next block", got)
	}
	if !d.fetched(1, 100, t0) {
		t.Fatal("block 1 not wanted")
	}
	if _, bytes := d.w.Held(); bytes != 100 {
		t.Fatalf("held bytes = %d, want 100 (block 1 alone, nothing in flight)", bytes)
	}
	for range 60 { // let the average learn small blocks
		d.w.avgSize += (100 - d.w.avgSize) / 8
	}
	got := d.launch(t0)
	if len(got) == 0 || len(got) > 9 || got[0] != 2 {
		t.Fatalf("launch = %v, want from 2, at most (1000-100)/100 blocks", got)
	}
	if _, bytes := d.w.Held(); bytes > 1000 {
		t.Fatalf("held %d bytes, over the bound", bytes)
	}

	// Full, a failed block further on is retried all the same.
	d = newWinDriver(testWindowConfig(10, 300, 10), 1)
	d.w.avgSize = 100
	if got := d.launch(t0); !slices.Equal(got, seq(1, 3)) {
		t.Fatalf("launch = %v, want 1..3", got)
	}
	d.fetched(3, 250, t0)
	d.w.Failed(2, d.ids[2], t0)
	retry, ok := d.w.NextWake()
	if !ok {
		t.Fatal("no wake-up for the retry")
	}
	if got := d.launch(retry); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("full window: relaunched %v, want the retry of 2 alone", got)
	}
}

func TestWindowDeliversInOrderWithinCredits(t *testing.T) {
	d := newWinDriver(testWindowConfig(10, 1<<30, 2), 1)
	d.launch(t0)
	d.fetched(2, 10, t0)
	d.fetched(3, 10, t0)
	if got := d.w.Deliverable(nil); len(got) != 0 {
		t.Fatalf("delivered %v before block 1", delivered(got))
	}
	d.fetched(1, 10, t0)
	if got := delivered(d.w.Deliverable(nil)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("deliverable = %v, want [1 2] (two credits)", got)
	}
	if got := d.w.Deliverable(nil); len(got) != 0 {
		t.Fatalf("delivered %v beyond the credits", delivered(got))
	}
	d.w.Acked(1)
	got := d.w.Deliverable(nil)
	if !slices.Equal(delivered(got), []uint64{3}) {
		t.Fatalf("after an ack: %v, want [3]", delivered(got))
	}
	if got[0].Payload != uint64(3) {
		t.Fatalf("delivery of 3 carries %v, want the payload given to Fetched", got[0].Payload)
	}
	if d.w.Outstanding() != 2 {
		t.Fatalf("outstanding = %d, want 2", d.w.Outstanding())
	}
	d.w.Acked(3) // cumulative: covers 2 as well
	if d.w.Outstanding() != 0 {
		t.Fatalf("outstanding = %d, want 0", d.w.Outstanding())
	}
	if _, bytes := d.w.Held(); bytes != 7*d.w.avgSize {
		t.Fatalf("held bytes %d, want only the 7 in flight at the average", bytes)
	}
}

func TestWindowRetriesWithBackoff(t *testing.T) {
	d := newWinDriver(testWindowConfig(1, 1<<30, 8), 1)
	d.launch(t0)
	if !d.w.Failed(1, d.ids[1], t0) {
		t.Fatal("the failed call was not wanted")
	}
	at1, ok := d.w.NextWake()
	if !ok {
		t.Fatal("no wake-up for the retry")
	}
	if got := d.launch(at1.Add(-time.Nanosecond)); len(got) != 0 {
		t.Fatalf("retried before the backoff: %v", got)
	}
	if got := d.launch(at1); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("not retried after the backoff: %v", got)
	}
	d.w.Failed(1, d.ids[1], at1)
	at2, _ := d.w.NextWake()
	d1, d2 := at1.Sub(t0), at2.Sub(at1)
	// RetryInitial 10ms, doubling, less up to half as jitter.
	if d1 < 5*time.Millisecond || d1 > 10*time.Millisecond || d2 < 10*time.Millisecond || d2 > 20*time.Millisecond {
		t.Fatalf("backoffs %s then %s: want 5..10ms then 10..20ms", d1, d2)
	}
	if d.w.Failed(1, d.ids[1], at2) {
		t.Fatal("a second failure of a call already failed was taken")
	}
}

// TestWindowPollsPastTheTip: an empty answer stops fetching at and past
// that block; once caught up, only the edge is probed, once per poll
// interval. A probe that finds its block moves the edge on by one and
// keeps the cadence: the window does not open again.
func TestWindowPollsPastTheTip(t *testing.T) {
	d := newWinDriver(testWindowConfig(8, 1<<30, 8), 1)
	d.launch(t0) // 1..8
	for n := uint64(1); n <= 4; n++ {
		d.fetched(n, 10, t0)
	}
	for n := uint64(5); n <= 8; n++ {
		if _, ok := d.w.Empty(n, d.ids[n], t0); !ok {
			t.Fatalf("empty answer for %d not wanted", n)
		}
	}
	if got := delivered(d.w.Deliverable(nil)); !slices.Equal(got, seq(1, 4)) {
		t.Fatalf("delivered %v, want 1..4", got)
	}
	if !d.w.CaughtUp() {
		t.Fatal("not caught up at the edge")
	}
	if got := d.launch(t0.Add(50 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("fetched %v before the poll interval", got)
	}
	probeAt := t0.Add(testPoll)
	if wake, ok := d.w.NextWake(); !ok || !wake.Equal(probeAt) {
		t.Fatalf("next wake %v (%v), want the probe time", wake.Sub(t0), ok)
	}
	got := d.launchProbes(probeAt)
	if len(got) != 1 || got[0] != (launched{5, true}) {
		t.Fatalf("probe = %v, want just a probe of 5", got)
	}
	// The probe finds block 5: the edge moves to 6, asked a poll interval
	// after the probe of 5 went, not at once, and alone.
	found := probeAt.Add(5 * time.Millisecond)
	d.fetched(5, 10, found)
	if d.w.CaughtUp() {
		t.Fatal("caught up with block 5 not delivered")
	}
	if got := d.launch(found); len(got) != 0 {
		t.Fatalf("the window opened again after the probe found block 5: %v", got)
	}
	if wake, ok := d.w.NextWake(); !ok || !wake.Equal(probeAt.Add(testPoll)) {
		t.Fatalf("next wake %v, want the next probe a poll interval after the last", wake.Sub(t0))
	}
	got = d.launchProbes(probeAt.Add(testPoll))
	if len(got) != 1 || got[0] != (launched{6, true}) {
		t.Fatalf("next probe = %v, want just a probe of 6", got)
	}
}

// TestWindowProbesAtOnceWhenBlocksComeFast: once consecutive blocks show
// the chain makes blocks faster than the poll interval, a probe that finds
// its block probes the next at once: one block per poll would fall behind.
func TestWindowProbesAtOnceWhenBlocksComeFast(t *testing.T) {
	d := newWinDriver(testWindowConfig(8, 1<<30, 8), 1)
	d.launch(t0)
	block := func(n uint64) time.Time { return t0.Add(time.Duration(n) * 20 * time.Millisecond) }
	for n := uint64(1); n <= 3; n++ {
		d.fetchedAt(n, block(n), t0)
	}
	for n := uint64(4); n <= 8; n++ {
		d.w.Empty(n, d.ids[n], t0)
	}
	d.w.Deliverable(nil)
	probeAt := t0.Add(testPoll)
	if got := d.launch(probeAt); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("probe = %v, want [4]", got)
	}
	d.fetchedAt(4, block(4), probeAt)
	if got := d.launchProbes(probeAt); len(got) != 1 || got[0] != (launched{5, true}) {
		t.Fatalf("after a hit with blocks every 20ms: %v, want a probe of 5 at once", got)
	}
}

// TestWindowTipSeenReopens: a tip seen past the edge makes the edge stale:
// the blocks up to the tip are fetched now (not probed), and the probing
// goes on past it.
func TestWindowTipSeenReopens(t *testing.T) {
	d := newWinDriver(testWindowConfig(8, 1<<30, 8), 1)
	d.launch(t0)
	for n := uint64(1); n <= 8; n++ {
		d.w.Empty(n, d.ids[n], t0)
	}
	d.w.TipSeen(3)
	got := d.launchProbes(t0.Add(time.Millisecond))
	want := []launched{{1, false}, {2, false}, {3, false}}
	if !slices.Equal(got, want) {
		t.Fatalf("after tip 3 was seen: %v, want 1..3 fetched, 4 not yet probed", got)
	}
	if got := d.launchProbes(t0.Add(testPoll)); len(got) != 1 || got[0] != (launched{4, true}) {
		t.Fatalf("at the poll: %v, want a probe of 4", got)
	}
	d.w.TipSeen(2) // older news: changes nothing
	if got := d.launch(t0.Add(testPoll)); len(got) != 0 {
		t.Fatalf("an old tip launched %v", got)
	}
}

// TestWindowResetDropsEverything: a reset forgets every slot, returns the
// calls that were in flight, and refuses their answers.
func TestWindowResetDropsEverything(t *testing.T) {
	d := newWinDriver(testWindowConfig(4, 1<<30, 8), 1)
	d.launch(t0)
	d.fetched(2, 10, t0)
	ids := d.w.Reset(2)
	slices.Sort(ids)
	if want := []uint64{d.ids[1], d.ids[3], d.ids[4]}; !slices.Equal(ids, want) {
		t.Fatalf("reset returned calls %v, want those in flight %v", ids, want)
	}
	if d.fetched(3, 10, t0) {
		t.Fatal("a result from before the reset was accepted")
	}
	if _, ok := d.w.Empty(4, d.ids[4], t0); ok || d.w.Failed(1, d.ids[1], t0) || d.w.Retry(1, d.ids[1], t0) {
		t.Fatal("an outcome of a call from before the reset was taken")
	}
	if blocks, bytes := d.w.Held(); blocks != 0 || bytes != 0 {
		t.Fatalf("after reset: holds %d blocks, %d bytes", blocks, bytes)
	}
	if got := d.launch(t0); !slices.Equal(got, seq(2, 5)) {
		t.Fatalf("after reset: %v, want 2..5", got)
	}
}

// TestWindowAckPastDelivered: after a reset, acks of an earlier round's
// deliveries move the window past them instead of being lost (which would
// leave its credits used up), and the calls for blocks now committed are
// returned as unwanted.
func TestWindowAckPastDelivered(t *testing.T) {
	d := newWinDriver(testWindowConfig(8, 1<<30, 2), 1)
	d.launch(t0)
	for n := uint64(1); n <= 4; n++ {
		d.fetched(n, 10, t0)
	}
	d.w.Deliverable(nil) // 1, 2
	d.w.Reset(1)         // the Applier restarted; but it had applied 1 and 2
	d.launch(t0)         // 1..8 again
	unwanted := d.w.Acked(2)
	slices.Sort(unwanted)
	if want := []uint64{d.ids[1], d.ids[2]}; !slices.Equal(unwanted, want) {
		t.Fatalf("acked past the calls %v, returned %v", want, unwanted)
	}
	if d.w.Next() != 3 || d.w.Outstanding() != 0 {
		t.Fatalf("after a late ack: next %d outstanding %d, want 3 and 0", d.w.Next(), d.w.Outstanding())
	}
	if got := d.launch(t0); !slices.Equal(got, seq(9, 10)) {
		t.Fatalf("launch after a late ack = %v, want 9 and 10 (3..8 in flight)", got)
	}
	if d.w.Acked(1) != nil || d.w.Next() != 3 {
		t.Fatal("an older ack moved the window")
	}
}

// TestWindowProbeRetriedAfterFailure: a probe of the edge that fails (the
// upstream went away while the follower was caught up) is retried after
// its backoff, not left waiting forever.
func TestWindowProbeRetriedAfterFailure(t *testing.T) {
	d := newWinDriver(testWindowConfig(4, 1<<30, 8), 1)
	d.launch(t0)
	for n := uint64(1); n <= 4; n++ {
		d.w.Empty(n, d.ids[n], t0)
	}
	probeAt := t0.Add(testPoll)
	if got := d.launch(probeAt); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("probe = %v, want [1]", got)
	}
	d.w.Failed(1, d.ids[1], probeAt)
	retry, ok := d.w.NextWake()
	if !ok || !retry.After(probeAt) || retry.After(probeAt.Add(10*time.Millisecond)) {
		t.Fatalf("next wake %v (%v), want the probe's retry within its backoff", retry.Sub(probeAt), ok)
	}
	if got := d.launch(retry.Add(-time.Nanosecond)); len(got) != 0 {
		t.Fatalf("probe retried before its backoff: %v", got)
	}
	if got := d.launchProbes(retry); len(got) != 1 || got[0] != (launched{1, true}) {
		t.Fatalf("after the backoff: %v, want the probe of 1 again", got)
	}
}

// TestWindowWakeUps: a retry that waits for a chance (NextChance) arms a
// wake-up for it, even one due at once; a block no upstream has room for
// waits for a call to end, and arms none.
func TestWindowWakeUps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer pick
		wake   bool
		at     time.Time
	}{
		{"retry later", pick{retryAt: t0.Add(7 * time.Millisecond)}, true, t0.Add(7 * time.Millisecond)},
		{"retry due at once", pick{retryAt: t0}, true, t0},
		{"no room anywhere", pick{}, false, time.Time{}},
	} {
		d := newWinDriver(testWindowConfig(4, 1<<30, 8), 7)
		d.answer = func(uint64, bool) pick { return tc.answer }
		if got := d.launch(t0); len(got) != 0 {
			t.Fatalf("%s: started %v", tc.name, got)
		}
		at, ok := d.w.NextWake()
		if ok != tc.wake || !at.Equal(tc.at) {
			t.Errorf("%s: next wake %v (%v), want %v (%v)", tc.name, at, ok, tc.at, tc.wake)
		}
	}
}

// TestWindowNoWakeUpBehindTheEdge: a block past a newly found edge whose
// call failed is not fetched until the edge moves past it, so its retry
// time must not keep waking the core: a wake-up in the past would spin.
func TestWindowNoWakeUpBehindTheEdge(t *testing.T) {
	d := newWinDriver(testWindowConfig(8, 1<<30, 8), 1)
	d.launch(t0)
	d.w.Empty(5, d.ids[5], t0) // the edge is 5
	d.w.Failed(6, d.ids[6], t0)
	later := t0.Add(20 * time.Millisecond)
	if got := d.launch(later); len(got) != 0 {
		t.Fatalf("launched %v past the edge", got)
	}
	if at, ok := d.w.NextWake(); ok && !at.After(later) {
		t.Fatalf("next wake %v, not after now %v: the core would spin until the probe", at.Sub(t0), later.Sub(t0))
	}
}

// TestWindowNoWakeUpWithoutRoom: when no upstream has room for a block,
// the retries due behind it would not find one either: they wait for a
// call to end, and arm no wake-up that would spin meanwhile.
func TestWindowNoWakeUpWithoutRoom(t *testing.T) {
	d := newWinDriver(testWindowConfig(4, 1<<30, 8), 1)
	d.launch(t0)
	for n := uint64(1); n <= 4; n++ {
		d.w.Failed(n, d.ids[n], t0)
	}
	later := t0.Add(time.Second)
	room := 1
	d.answer = func(uint64, bool) pick {
		if room == 0 {
			return pick{}
		}
		room--
		return pick{started: true}
	}
	if got := d.launch(later); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("with room for one: launched %v, want [1]", got)
	}
	if at, ok := d.w.NextWake(); ok {
		t.Fatalf("a wake-up at %v while no upstream has room: it would spin", at.Sub(t0))
	}
	room = 3 // a call ended
	if got := d.launch(later); !slices.Equal(got, seq(2, 4)) {
		t.Fatalf("once a call ended: launched %v, want 2..4", got)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{0, 10 * time.Millisecond}, {1, 10 * time.Millisecond}, {2, 20 * time.Millisecond}, {3, 40 * time.Millisecond}, {5, 100 * time.Millisecond}, {50, 100 * time.Millisecond}} {
		if got := Backoff(tc.attempt, 10*time.Millisecond, 100*time.Millisecond, nil); got != tc.want {
			t.Errorf("attempt %d: %s, want %s", tc.attempt, got, tc.want)
		}
	}
}
