package actors

import (
	"math/rand/v2"
	"time"
)

// Window is the block window of the FetchCore: which block numbers to fetch
// now, which fetched blocks may go to the Applier, when to retry, when to
// probe past the upstreams' tip. thread-compatible: owned by the FetchCore.
//
// The window is bounded in blocks and in bytes: held blocks count their real
// size, blocks in flight count the running average size. Counting blocks
// alone lets a run of large blocks exhaust memory. How many calls may be in
// flight on each upstream is the Book's business (its limit).
type Window struct {
	// immutable after construction
	maxBlocks    int
	maxBytes     int64
	credits      int           // deliveries the Applier may hold unacknowledged
	pollInterval time.Duration // probing past the tip, once caught up
	retryInitial time.Duration
	retryMax     time.Duration
	rng          *rand.Rand

	next    uint64 // next number to deliver; next-1 is the highest delivered
	acked   uint64 // committed tip the Applier last reported
	slots   map[uint64]*slot
	flying  int   // slots in flight
	held    int64 // bytes of fetched blocks not yet delivered
	avgSize int64 // running average block size (estimate for blocks in flight)
	// Past the tip: the lowest number believed past every upstream's tip.
	// Nothing at or beyond it is fetched but the probe of edge itself, once
	// per poll interval (probeAt). A probe that finds its block moves the
	// edge on by one and keeps the cadence: a caught-up follower asks one
	// block per poll interval, not the whole window each time a block
	// appears.
	edge    uint64 // 0: unknown (catching up: the whole window is asked)
	probeAt time.Time
	// interval is the chain's block interval learned from the timestamps
	// of consecutive blocks (clock skew cancels out); when blocks come
	// faster than the poll interval a probe that finds one probes again at
	// once, or the follower would fall behind by one block per poll.
	interval time.Duration
	lastNum  uint64
	lastTime time.Time
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
	calls    int       // calls in flight for it: 1, or 2 once hedged
	ids      [2]uint64 // their ids, while in flight
	hedged   bool      // a second upstream was asked (at most once per launch)
	payload  any       // the fetched block, while ready
	upstream int       // who served it (ready) or was asked first (in flight)
	tim      time.Time // the block's timestamp, while ready
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
	w.Reset(next)
	return w
}

// Reset forgets everything and delivers from next: after a rejected block,
// a resync from the Applier, or a restart. It returns the ids of the calls
// that were in flight, now unwanted.
func (w *Window) Reset(next uint64) []uint64 {
	var ids []uint64
	for _, sl := range w.slots {
		ids = append(ids, sl.ids[:sl.calls]...)
	}
	w.next, w.acked = next, next-1
	w.slots = map[uint64]*slot{}
	w.held, w.flying = 0, 0
	w.edge = 0
	return ids
}

// Next is the next number to deliver.
func (w *Window) Next() uint64 { return w.next }

// Held returns the number of blocks and bytes the window holds or expects.
func (w *Window) Held() (blocks int, bytes int64) {
	return len(w.slots), w.held + int64(w.flying)*w.avgSize
}

// pick is what the FetchCore answers for a block Launch would start: a call
// was started (with this id), or none can be now and the block is retried
// at retryAt, or every upstream lacks it (it is past the tip).
type pick struct {
	id      uint64
	started bool
	retryAt time.Time
	pastTip bool
}

// Launch offers every block that should be fetched now to start, in order,
// and records what it answers. The next block to deliver is always offered,
// whatever its size, so one block larger than the byte bound cannot wedge
// the window. It stops at the first block start cannot place (no upstream
// has room): the later ones would not find one either.
func (w *Window) Launch(now time.Time, start func(n uint64, probe bool) pick) {
	_, bytes := w.Held()
	for n := w.next; n < w.next+uint64(w.maxBlocks); n++ {
		probe := w.edge != 0 && n >= w.edge
		sl := w.slots[n]
		switch {
		case probe && n > w.edge:
			return // past the tip only the edge itself is asked
		case sl == nil && probe && now.Before(w.probeAt):
			return
		case sl == nil:
			if n != w.next && bytes+w.avgSize > w.maxBytes {
				continue // full; but a retry further on still goes
			}
			sl = &slot{state: waiting}
			w.slots[n] = sl
			if probe {
				w.probeAt = now.Add(w.pollInterval)
			}
		case sl.state != waiting || now.Before(sl.retryAt):
			if probe {
				return
			}
			continue
		}
		p := start(n, probe)
		switch {
		case p.started:
			sl.state, sl.launched, sl.calls, sl.ids[0], sl.hedged = inFlight, now, 1, p.id, false
			w.flying++
			bytes += w.avgSize
		case p.pastTip:
			delete(w.slots, n)
			w.setEdge(n, now)
			return
		default:
			sl.retryAt = p.retryAt
			if p.retryAt.IsZero() {
				// No upstream has room: nothing later would find one. The
				// retries due further on wait for a call to end as well, or
				// their times, past, would wake the core at once, again and
				// again, until one does.
				for m, later := range w.slots {
					if m > n && later.state == waiting && !later.retryAt.After(now) {
						later.retryAt = time.Time{}
					}
				}
				return
			}
		}
	}
}

func (w *Window) setEdge(n uint64, now time.Time) {
	if w.edge == 0 || n < w.edge {
		w.edge = n
		w.probeAt = now.Add(w.pollInterval)
	}
}

// ProbeNow lets the next probe past the tip go at once rather than a poll
// interval after the last: the last was a held call, which waited already.
func (w *Window) ProbeNow(now time.Time) { w.probeAt = now }

// Hedged records a second call (id) for block n, in flight.
func (w *Window) Hedged(n, id uint64) {
	if sl := w.slots[n]; sl != nil && sl.state == inFlight && sl.calls == 1 {
		sl.ids[1], sl.calls, sl.hedged = id, 2, true
	}
}

// ended removes call id from n's calls in flight; it reports whether it
// was one, and how many remain.
func (w *Window) ended(n, id uint64) (ok bool, left int) {
	sl := w.slots[n]
	if sl == nil || sl.state != inFlight {
		return false, 0
	}
	for k := 0; k < sl.calls; k++ {
		if sl.ids[k] == id {
			sl.ids[k] = sl.ids[sl.calls-1]
			sl.calls--
			// hedged stays set: a hedge that failed or lied is not tried
			// again while the first call runs (with a liar beside a staller
			// that would spin at the liar's round trip); the first call's
			// own timeout ends the wait.
			return true, sl.calls
		}
	}
	return false, 0
}

// Fetched records block n of size bytes, served by upstream, with its
// timestamp; it returns the ids of other calls still in flight for it
// (hedges that lost), to cancel. ok is false if n is no longer wanted.
func (w *Window) Fetched(n, id uint64, size int, upstream int, blockTime time.Time, payload any, now time.Time) (losers []uint64, ok bool) {
	if found, _ := w.ended(n, id); !found {
		return nil, false
	}
	sl := w.slots[n]
	losers = append(losers, sl.ids[:sl.calls]...)
	sl.state, sl.size, sl.calls, sl.payload, sl.upstream, sl.tim = ready, int64(size), 0, payload, upstream, blockTime
	w.flying--
	w.held += sl.size
	w.avgSize += (int64(size) - w.avgSize) / 8
	w.learnInterval(n, blockTime)
	if w.edge != 0 && n >= w.edge {
		// Found at the edge: the next block is the new edge, asked on the
		// same cadence; at once when blocks come faster than the polls.
		w.edge = n + 1
		if w.interval > 0 && w.interval < w.pollInterval {
			w.probeAt = now
		}
	}
	return losers, true
}

func (w *Window) learnInterval(n uint64, t time.Time) {
	if n == w.lastNum+1 && !w.lastTime.IsZero() && t.After(w.lastTime) {
		d := t.Sub(w.lastTime)
		if w.interval == 0 {
			w.interval = d
		} else {
			w.interval += (d - w.interval) / 8
		}
	}
	if n > w.lastNum {
		w.lastNum, w.lastTime = n, t
	}
}

// TipSeen records that an upstream says it holds block tip: a tip from the
// health poller, or a block served. An edge at or below it is stale (the
// upstream made blocks meanwhile, or was behind and caught up): the blocks
// up to tip are fetched now, and the probing goes on past it.
func (w *Window) TipSeen(tip uint64) {
	if w.edge != 0 && tip >= w.edge {
		w.edge = tip + 1
	}
}

// Empty records that call id found no block n anywhere: n is past the tip.
// Nothing at or past n is fetched until a probe of n after the poll
// interval. A hedge still in flight for n is no longer wanted either (one
// empty answer at the edge is the tip): its id is returned, to cancel. ok
// reports whether the call was still wanted.
func (w *Window) Empty(n, id uint64, now time.Time) (others []uint64, ok bool) {
	found, left := w.ended(n, id)
	if !found {
		return nil, false
	}
	sl := w.slots[n]
	others = append(others, sl.ids[:left]...)
	delete(w.slots, n)
	w.flying--
	w.setEdge(n, now)
	return others, true
}

// Retry puts n back to be fetched again at `at` (at once, from another
// upstream; or when an upstream comes back from its backoff), unless
// another call for it is still in flight. It reports whether call id was
// still wanted.
func (w *Window) Retry(n, id uint64, at time.Time) bool {
	found, left := w.ended(n, id)
	if found && left == 0 {
		sl := w.slots[n]
		sl.state, sl.retryAt = waiting, at
		w.flying--
	}
	return found
}

// Missed records that call id found no block n at its upstream while
// another may hold it: n is asked again at `at`, unless another call for
// it is in flight. That call may then be hedged again when it is late,
// even if it was the hedge: the upstream that answered empty is asked
// again once its answer goes stale (half a poll interval), so a block
// asked of a staller and of an upstream that did not have it yet is not
// left to the staller's timeout.
func (w *Window) Missed(n, id uint64, at time.Time) bool {
	found := w.Retry(n, id, at)
	if sl := w.slots[n]; found && sl != nil && sl.state == inFlight {
		sl.hedged = false
	}
	return found
}

// Failed records a failed call id for n; unless another call for n is in
// flight, n is retried after an exponential backoff with jitter. It
// reports whether the call was still wanted.
func (w *Window) Failed(n, id uint64, now time.Time) bool {
	found, left := w.ended(n, id)
	if found && left == 0 {
		sl := w.slots[n]
		sl.attempts++
		sl.state, sl.retryAt = waiting, now.Add(Backoff(sl.attempts, w.retryInitial, w.retryMax, w.rng))
		w.flying--
	}
	return found
}

// RetryNow brings every failed block's retry forward to now, keeping its
// attempt count: the upstream they failed on is reachable again.
func (w *Window) RetryNow(now time.Time) {
	for _, sl := range w.slots {
		if sl.state == waiting && sl.retryAt.After(now) {
			sl.retryAt = now
		}
	}
}

// Delivery is a block the FetchCore hands to the Applier.
type Delivery struct {
	N         uint64
	Payload   any // what the shell gave CallDone: the decoded block
	Upstream  int
	BlockTime time.Time
}

// Deliverable pops the blocks that may go to the Applier now: contiguous
// from next, while the Applier holds fewer than credits unacknowledged.
func (w *Window) Deliverable(out []Delivery) []Delivery {
	for w.Outstanding() < w.credits {
		sl := w.slots[w.next]
		if sl == nil || sl.state != ready {
			break
		}
		delete(w.slots, w.next)
		w.held -= sl.size
		out = append(out, Delivery{N: w.next, Payload: sl.payload, Upstream: sl.upstream, BlockTime: sl.tim})
		w.next++
	}
	return out
}

// Acked records the Applier's committed tip (cumulative). A tip past what
// this window delivered means the Applier applied deliveries made before a
// reset: the window skips ahead to the block after it. It returns the ids
// of calls in flight for blocks now committed.
func (w *Window) Acked(tip uint64) (unwanted []uint64) {
	if tip <= w.acked {
		return nil
	}
	w.acked = tip
	if tip >= w.next {
		for n := w.next; n <= tip; n++ {
			if sl := w.slots[n]; sl != nil {
				switch sl.state {
				case ready:
					w.held -= sl.size
				case inFlight:
					w.flying--
					unwanted = append(unwanted, sl.ids[:sl.calls]...)
				}
				delete(w.slots, n)
			}
		}
		w.next = tip + 1
	}
	return unwanted
}

// Outstanding is the number of deliveries not yet acknowledged.
func (w *Window) Outstanding() int { return int(w.next - 1 - w.acked) }

// NextWake is the earliest time a retry or probe falls due; ok is false
// when none is pending. A retry due at once (or in the past) counts: the
// shell arms its timer for it rather than mistaking it for "none".
func (w *Window) NextWake() (at time.Time, ok bool) {
	consider := func(t time.Time) {
		if !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	for n, sl := range w.slots {
		// A zero retry time waits for a call to end (no upstream had room),
		// which steps the core anyway: a timer for it would spin. So would
		// one for a retry past the edge: nothing there is asked until the
		// edge moves, which steps the core too.
		if sl.state == waiting && !sl.retryAt.IsZero() && (w.edge == 0 || n <= w.edge) {
			consider(sl.retryAt)
		}
	}
	if w.edge != 0 && w.slots[w.edge] == nil && w.edge < w.next+uint64(w.maxBlocks) {
		consider(w.probeAt)
	}
	return at, ok
}

// CaughtUp reports whether the window is waiting at the upstreams' tip.
func (w *Window) CaughtUp() bool { return w.edge != 0 && w.edge <= w.next }

// doubling is initial doubled once per step after the first, capped at
// max: the one exponential backoff of the engine (fetch retries, restarts,
// proof asks after a miss).
func doubling(steps int, initial, max time.Duration) time.Duration {
	d := initial
	for i := 1; i < steps && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// Backoff is the delay before attempt+1: exponential from initial, capped
// at max, with up to 50% jitter taken off so retries of many blocks spread
// (no jitter when rng is nil).
func Backoff(attempt int, initial, max time.Duration, rng *rand.Rand) time.Duration {
	d := doubling(attempt, initial, max)
	if d <= 0 || rng == nil {
		return d
	}
	return d - time.Duration(rng.Int64N(int64(d)/2+1))
}
