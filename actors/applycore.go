package actors

import (
	"time"
)

// ApplyCore is the Applier's decision logic as a deterministic state
// machine: which delivered blocks to apply together, what to tell the
// others after, when to try again after a failed write. The Applier actor
// applies each group (store.ApplyBlocks) and sends the messages.
// thread-compatible.
//
// Groups: deliveries wait in order in a queue. After each commit the core
// asks the shell to drain (Ready.Drain), which it does after the messages
// already waiting for it (the actor sends itself a message, which comes
// after the deliveries that arrived during the commit), so that a group
// holds every consecutive block delivered by then, up to the bounds:
// blocks, bytes, and the time the group would take at the last groups'
// rate per block. A block that finds the core idle (no group out, no
// drain due: caught up) is handed out at once, alone, exactly as with
// groups off.
type ApplyCore struct {
	cfg      ApplyConfig
	next     uint64   // the block number the store expects
	queue    []queued // delivered, in order from next, not yet applied
	group    int      // blocks of queue in the group handed out (0: none)
	drain    bool     // a drain was asked for and has not come
	failed   bool     // the group's write failed: retried at the timer
	attempts int
	perBlock time.Duration // recent apply time per block (0: none yet)
	ready    ApplyReady
	out      ApplyReady
}

type queued struct {
	n     uint64
	bytes int
	block any
}

// ApplyConfig configures an ApplyCore. A zero group bound is no bound but
// the others; GroupBlocks 1 turns grouping off: each block is handed out
// as it is delivered, with no drain.
type ApplyConfig struct {
	RetryInitial, RetryMax time.Duration
	GroupBlocks            int           // blocks in a group, at most
	GroupBytes             int           // encoded bytes in a group, at most (a larger block is a group alone)
	GroupTime              time.Duration // a group's expected apply time, at most
}

// ApplyOutcome is how an apply ended.
type ApplyOutcome int

const (
	ApplyOK       ApplyOutcome = iota // committed
	ApplyRejected                     // a block failed validation: those before it committed, it and later ones not
	ApplyFailed                       // an I/O failure: nothing committed; retried after a backoff
	ApplyClosed                       // the store is closing: nothing more to do
)

// ApplyReady holds the effects of the steps since the last Ready.
type ApplyReady struct {
	// Apply blocks First..First+Count-1 now (Group returns them), then
	// step Applied with the result. Count 0: nothing to apply.
	First    uint64
	Count    int
	Drain    bool   // step DrainDue once the messages waiting now are in
	Acked    uint64 // tell the Fetcher the committed tip (a bare acknowledgement; 0: none)
	Resync   uint64 // tell the Fetcher to deliver from here (0: none)
	Rejected bool   // a block of the group failed validation: tell the Fetcher
	Retried  bool   // a write failed: RetryAt is set; Attempts counts them
	RetryAt  time.Time
	Attempts int
	Resumed  int // applying works again after this many failed attempts (0: it never stopped)
}

// Events of the ApplyCore.
type (
	// Delivered: block N from the Fetcher, Bytes long encoded.
	Delivered struct {
		N     uint64
		Bytes int
		Block any
	}
	// DrainDue: the drain the core asked for.
	DrainDue struct{}
	// Applied: the apply of the group handed out ended so, after Took;
	// Committed blocks of it are in (all of them for ApplyOK, those
	// before the bad one for ApplyRejected, none otherwise).
	Applied struct {
		Outcome   ApplyOutcome
		Committed int
		Took      time.Duration
	}
	// RetryDue: the retry timer fired.
	RetryDue struct{}
)

// NewApplyCore expects block next (the store's tip + 1).
func NewApplyCore(cfg ApplyConfig, next uint64) *ApplyCore {
	return &ApplyCore{cfg: cfg, next: next}
}

// Next is the block the store expects.
func (a *ApplyCore) Next() uint64 { return a.next }

// Attempts is how many times in a row the pending group's write failed.
func (a *ApplyCore) Attempts() int { return a.attempts }

// Group returns the blocks of the group handed out, in order.
func (a *ApplyCore) Group() []any {
	out := make([]any, a.group)
	for i := range out {
		out[i] = a.queue[i].block
	}
	return out
}

// Ready returns the effects since the last call and clears them.
func (a *ApplyCore) Ready() *ApplyReady {
	a.out, a.ready = a.ready, ApplyReady{}
	return &a.out
}

// Step applies one event at now.
func (a *ApplyCore) Step(now time.Time, ev any) {
	switch e := ev.(type) {
	case Delivered:
		end := a.next + uint64(len(a.queue))
		switch {
		case e.N < end:
			// A duplicate from before a resync: already applied or
			// queued. The ack tells the Fetcher where the store is, so
			// its credits are right.
			a.ready.Acked = a.next - 1
		case e.N > end:
			a.ready.Resync = end // a gap: something was lost
		default:
			a.queue = append(a.queue, queued{n: e.N, bytes: e.Bytes, block: e.Block})
			if !a.drain {
				// Idle, or a group out (it goes at that group's end):
				// nothing is known to wait behind this block, which goes
				// at once. With a drain due, it joins the drain's group.
				a.handOut()
			}
		}
	case DrainDue:
		a.drain = false
		a.handOut()
	case RetryDue:
		if a.failed {
			a.failed = false
			a.ready.First, a.ready.Count = a.next, a.group
		}
	case Applied:
		if a.group == 0 {
			return // no group out: a stale result
		}
		done := min(max(e.Committed, 0), a.group)
		switch e.Outcome {
		case ApplyOK:
			done = a.group
			if a.attempts > 0 {
				a.ready.Resumed, a.attempts = a.attempts, 0
			}
			if e.Took > 0 {
				a.learn(e.Took / time.Duration(done))
			}
		case ApplyRejected:
			// The blocks after the bad one go back to the Fetcher,
			// which delivers again from it.
			a.ready.Rejected = true
			a.next += uint64(done)
			a.queue, a.group = a.queue[:0], 0
			return
		case ApplyFailed:
			a.failed = true
			a.attempts++
			a.ready.Retried, a.ready.Attempts = true, a.attempts
			a.ready.RetryAt = now.Add(Backoff(a.attempts, a.cfg.RetryInitial, a.cfg.RetryMax, nil))
			return
		case ApplyClosed:
			return
		}
		a.next += uint64(done)
		a.queue = append(a.queue[:0], a.queue[done:]...)
		a.group = 0
		if a.cfg.GroupBlocks == 1 {
			a.handOut() // groups off: the next block at once, no drain
			return
		}
		// What arrived during the commit waits in the mailbox: drain
		// after it (with nothing there, the drain finds nothing).
		a.drain = true
		a.ready.Drain = true
	}
}

// handOut hands out the next group, if none is out.
func (a *ApplyCore) handOut() {
	if a.group > 0 || len(a.queue) == 0 {
		return
	}
	limit := len(a.queue)
	if a.cfg.GroupBlocks > 0 {
		limit = min(limit, a.cfg.GroupBlocks)
	}
	if a.cfg.GroupTime > 0 && a.perBlock > 0 {
		limit = min(limit, max(1, int(a.cfg.GroupTime/a.perBlock)))
	}
	k, bytes := 0, 0
	for k < limit {
		bytes += a.queue[k].bytes
		if k > 0 && a.cfg.GroupBytes > 0 && bytes > a.cfg.GroupBytes {
			break
		}
		k++
	}
	a.group = k
	a.ready.First, a.ready.Count = a.next, k
}

// learn folds one group's time per block into the estimate the time bound
// uses: a moving average over about the last eight groups.
func (a *ApplyCore) learn(d time.Duration) {
	if a.perBlock == 0 {
		a.perBlock = d
		return
	}
	a.perBlock += (d - a.perBlock) / 8
}
