package actors

import (
	"math/rand/v2"
	"time"
)

// Window is the Fetcher's decision logic, apart from any I/O: which block
// numbers to fetch now, which fetched blocks may go to the Applier, when to
// retry, when to poll past the upstream's tip. The Fetcher actor steps it
// with what happens (Fetched, Empty, Failed, Acked, Reset) and acts on what
// Launch and Deliverable return. thread-compatible: owned by one actor.
//
// The window is bounded in blocks and in bytes: held blocks count their real
// size, blocks in flight count the running average size. Counting blocks
// alone lets a run of large blocks exhaust memory.
type Window struct {
	// immutable after construction
	maxBlocks    int
	maxBytes     int64
	credits      int           // deliveries the Applier may hold unacknowledged
	pollInterval time.Duration // probing past the tip, once caught up
	retryInitial time.Duration
	retryMax     time.Duration
	rng          *rand.Rand

	next      uint64 // next number to deliver
	delivered uint64 // highest number delivered (next-1)
	acked     uint64 // committed tip the Applier last reported
	slots     map[uint64]*slot
	held      int64 // bytes of fetched blocks not yet delivered
	avgSize   int64 // running average block size (estimate for blocks in flight)
	// Past the tip: the lowest number an upstream answered empty. Nothing at or
	// beyond it is fetched until the probe at probeAt finds it.
	edge    uint64 // 0: unknown
	probeAt time.Time
	// limit bounds the calls in flight below maxBlocks on a slow link. Calls
	// in flight share the link, and on one too slow to carry the whole
	// window within the fetch timeout every call would time out, be retried
	// together with the others and time out again, for ever. So, as TCP
	// does with its congestion window: a timeout cuts the limit to 1 and a
	// call that took over half the timeout halves it; either sets the
	// threshold to half the calls that were in flight. Below the threshold
	// each block fetched adds 1 (doubling per round trip), above it 1 per
	// limit's worth of blocks. Calls launched before a cut do not cut again:
	// the calls of one overloaded window end slow together.
	limit, threshold, grown int
	cutAt                   time.Time
}

type slotState int

const (
	inFlight slotState = iota
	ready
	waiting // failed; retry at retryAt
)

type slot struct {
	state    slotState
	size     int64
	attempts int
	retryAt  time.Time
	launched time.Time
}

// WindowConfig sets a Window's bounds and timing.
type WindowConfig struct {
	MaxBlocks    int
	MaxBytes     int64
	Credits      int
	PollInterval time.Duration
	RetryInitial time.Duration
	RetryMax     time.Duration
	Seed         uint64 // jitter; fixed in tests
}

// initialSizeGuess is the size assumed for blocks in flight before any has
// arrived: a `standard` block.
const initialSizeGuess = 128 << 10

// NewWindow returns a window that delivers from next.
func NewWindow(c WindowConfig, next uint64) *Window {
	w := &Window{
		maxBlocks: max(c.MaxBlocks, 1), maxBytes: c.MaxBytes, credits: max(c.Credits, 1),
		pollInterval: c.PollInterval, retryInitial: c.RetryInitial, retryMax: c.RetryMax,
		rng: rand.New(rand.NewPCG(c.Seed, 0x5eed)), avgSize: initialSizeGuess,
	}
	w.limit, w.threshold = w.maxBlocks, w.maxBlocks
	w.Reset(next)
	return w
}

// Reset forgets everything and delivers from next: after a rejected block,
// a resync from the Applier, or a restart. The limit on calls in flight
// stays: the link is the same.
func (w *Window) Reset(next uint64) {
	w.next, w.delivered, w.acked = next, next-1, next-1
	w.slots = map[uint64]*slot{}
	w.held = 0
	w.edge = 0
}

// Next is the next number to deliver.
func (w *Window) Next() uint64 { return w.next }

// Held returns the number of blocks and bytes the window holds or expects.
func (w *Window) Held() (blocks int, bytes int64) {
	return len(w.slots), w.held + int64(w.count(inFlight))*w.avgSize
}

func (w *Window) count(s slotState) int {
	n := 0
	for _, sl := range w.slots {
		if sl.state == s {
			n++
		}
	}
	return n
}

// Launch returns the numbers to start fetching now, and marks them in
// flight. The next block to deliver is always allowed, whatever its size, so
// one block larger than the byte bound cannot wedge the window.
func (w *Window) Launch(now time.Time) []uint64 {
	var out []uint64
	_, bytes := w.Held()
	flying := w.count(inFlight)
	for n := w.next; n < w.next+uint64(w.maxBlocks) && flying < w.limit; n++ {
		if w.edge != 0 && n >= w.edge {
			// Past the tip only the edge itself is asked: a probe per poll
			// interval, or the retry of a probe that failed.
			if n == w.edge {
				switch sl := w.slots[n]; {
				case sl == nil && !now.Before(w.probeAt):
					w.slots[n] = &slot{state: inFlight, launched: now}
					w.probeAt = now.Add(w.pollInterval)
					out = append(out, n)
				case sl != nil && sl.state == waiting && !now.Before(sl.retryAt):
					sl.state, sl.launched = inFlight, now
					out = append(out, n)
				}
			}
			break
		}
		sl := w.slots[n]
		switch {
		case sl == nil:
			if n != w.next && bytes+w.avgSize > w.maxBytes {
				continue // full; but a retry further on still goes
			}
			w.slots[n] = &slot{state: inFlight, launched: now}
		case sl.state == waiting && !now.Before(sl.retryAt):
			sl.state, sl.launched = inFlight, now
		default:
			continue
		}
		bytes += w.avgSize
		flying++
		out = append(out, n)
	}
	return out
}

// Fetched records block n of size bytes; false if n is no longer wanted
// (the window was reset meanwhile) and should be dropped.
func (w *Window) Fetched(n uint64, size int) bool {
	sl := w.slots[n]
	if sl == nil || sl.state != inFlight {
		return false
	}
	sl.state, sl.size = ready, int64(size)
	w.grow()
	w.held += sl.size
	w.avgSize += (int64(size) - w.avgSize) / 8
	if w.edge != 0 && n >= w.edge {
		w.edge = 0 // the upstream moved past the edge: fetch ahead again
	}
	return true
}

// Empty records that no upstream has block n yet: n is past the tip.
// Nothing at or past n is fetched until a probe of n after the poll interval.
func (w *Window) Empty(n uint64, now time.Time) {
	sl := w.slots[n]
	if sl == nil || sl.state != inFlight {
		return
	}
	delete(w.slots, n)
	if w.edge == 0 || n < w.edge {
		w.edge = n
		w.probeAt = now.Add(w.pollInterval)
	}
}

// Retry puts n back to be fetched again at the time given (at once, from
// another upstream; or when an upstream comes back from its backoff).
func (w *Window) Retry(n uint64, at time.Time) {
	if sl := w.slots[n]; sl != nil && sl.state == inFlight {
		sl.state, sl.retryAt = waiting, at
	}
}

// Failed records a failed fetch of n; it is retried after an exponential
// backoff with jitter. It returns the delay.
func (w *Window) Failed(n uint64, now time.Time) time.Duration {
	sl := w.slots[n]
	if sl == nil || sl.state != inFlight {
		return 0
	}
	sl.attempts++
	d := Backoff(sl.attempts, w.retryInitial, w.retryMax, w.rng)
	sl.state, sl.retryAt = waiting, now.Add(d)
	return d
}

// grow widens the limit after a block arrived (see limit).
func (w *Window) grow() {
	if w.limit < w.threshold {
		w.limit++
	} else if w.grown++; w.grown >= w.limit {
		w.limit, w.grown = w.limit+1, 0
	}
	w.limit = min(w.limit, w.maxBlocks)
}

// cut narrows the limit for a call to n that timed out (to 1) or was slow
// (to half the calls in flight), unless it was launched before the last cut.
func (w *Window) cut(n uint64, now time.Time, timedOut bool) {
	sl := w.slots[n]
	if sl == nil || sl.state != inFlight || sl.launched.Before(w.cutAt) {
		return
	}
	w.threshold = max(1, w.count(inFlight)/2)
	w.limit, w.grown, w.cutAt = w.threshold, 0, now
	if timedOut {
		w.limit = 1
	}
}

// TimedOut records a fetch of n that ran out of time: a failure (Failed)
// that also cuts the calls allowed in flight (see limit). It returns the
// retry delay.
func (w *Window) TimedOut(n uint64, now time.Time) time.Duration {
	w.cut(n, now, true)
	return w.Failed(n, now)
}

// Slow records that the fetch of n, still to be passed to Fetched, took
// over half the fetch timeout: the link is near what it can carry in time,
// and the calls allowed in flight are halved (see limit).
func (w *Window) Slow(n uint64, now time.Time) { w.cut(n, now, false) }

// Limit is how many calls may be in flight now.
func (w *Window) Limit() int { return w.limit }

// RetryNow brings every failed block's retry forward to now, keeping its
// attempt count: the upstream they failed on is reachable again.
func (w *Window) RetryNow(now time.Time) {
	for _, sl := range w.slots {
		if sl.state == waiting && sl.retryAt.After(now) {
			sl.retryAt = now
		}
	}
}

// Deliverable pops the blocks that may go to the Applier now: contiguous
// from next, while the Applier holds fewer than credits unacknowledged.
func (w *Window) Deliverable() []uint64 {
	var out []uint64
	for int(w.delivered-w.acked) < w.credits {
		sl := w.slots[w.next]
		if sl == nil || sl.state != ready {
			break
		}
		delete(w.slots, w.next)
		w.held -= sl.size
		out = append(out, w.next)
		w.delivered = w.next
		w.next++
	}
	return out
}

// Acked records the Applier's committed tip (cumulative). A tip past what
// this window delivered means the Applier applied deliveries made before a
// reset: the window skips ahead to the block after it.
func (w *Window) Acked(tip uint64) {
	if tip <= w.acked {
		return
	}
	w.acked = tip
	if tip > w.delivered {
		for n := w.next; n <= tip; n++ {
			if sl := w.slots[n]; sl != nil {
				if sl.state == ready {
					w.held -= sl.size
				}
				delete(w.slots, n)
			}
		}
		w.next, w.delivered = tip+1, tip
	}
}

// Outstanding is the number of deliveries not yet acknowledged.
func (w *Window) Outstanding() int { return int(w.delivered - w.acked) }

// NextWake is the earliest time a retry or probe falls due; ok is false
// when none is pending. A retry due at once (or in the past) counts: the
// Fetcher arms its timer for it rather than mistaking it for "none".
func (w *Window) NextWake() (at time.Time, ok bool) {
	if w.count(inFlight) >= w.limit {
		// Nothing launches before a call in flight ends, and its result
		// steps the Fetcher anyway: a timer now would only spin.
		return time.Time{}, false
	}
	consider := func(t time.Time) {
		if !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	for _, sl := range w.slots {
		if sl.state == waiting {
			consider(sl.retryAt)
		}
	}
	if w.edge != 0 && w.slots[w.edge] == nil {
		consider(w.probeAt)
	}
	return at, ok
}

// CaughtUp reports whether the window is waiting at the upstream's tip.
func (w *Window) CaughtUp() bool { return w.edge != 0 && w.edge <= w.next }

// Backoff is the delay before attempt+1: exponential from initial, capped
// at max, with up to 50% jitter taken off so retries of many blocks spread
// (no jitter when rng is nil).
func Backoff(attempt int, initial, max time.Duration, rng *rand.Rand) time.Duration {
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 0 || rng == nil {
		return d
	}
	return d - time.Duration(rng.Int64N(int64(d)/2+1))
}
