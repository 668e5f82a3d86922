package actors

import (
	"time"
)

// ApplyCore is the Applier's decision logic as a deterministic state
// machine: which delivered blocks to apply together, what to tell the
// others after, when to try again after a failed write. The Applier actor
// stages each group (store.Stage: validated, in the block file), commits it
// in the background (store.Commit) and sends the messages.
// thread-compatible.
//
// Groups: deliveries wait in order in a queue. After each group is staged
// the core asks the shell to drain (Ready.Drain), which it does after the
// messages already waiting for it (the actor sends itself a message, which
// comes after the deliveries that arrived meanwhile), so that a group holds
// every consecutive block delivered by then, up to the bounds: blocks,
// bytes, and the time the group would take at the last groups' rate per
// block. A block that finds the core idle (no group out, no drain due:
// caught up) is handed out at once, alone, exactly as with groups off.
//
// Overlap: the next group is handed out while the one before commits
// (validated on the state that one leaves) once it is full (a bound cuts
// it); a part group waits for that commit to end, gathering what comes
// meanwhile. No further: at most one group waits for its commit behind the
// one committing, and none behind a barrier (a group whose commit the next
// one's validation must wait for).
// A commit that fails takes the groups staged after it with it; they are
// staged again.
type ApplyCore struct {
	cfg      ApplyConfig
	next     uint64        // the first block not committed
	queue    []queued      // delivered, in order from next, not yet committed
	staged   []stagedGroup // groups staged, their commits under way, in order: the queue's first blocks
	group    int           // blocks after the staged ones in the group handed out (0: none)
	id       uint64        // the id of the last group handed out
	drain    bool          // a drain was asked for and has not come
	failed   bool          // a write failed: the next group waits for the timer
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

// stagedGroup is a group whose commit is under way.
type stagedGroup struct {
	id      uint64
	blocks  int
	took    time.Duration // its staging
	barrier bool
}

// ApplyConfig configures an ApplyCore. A zero group bound is no bound but
// the others; GroupBlocks 1 turns grouping off: each block is handed out
// as it is delivered, with no drain. NoOverlap hands out a group only once
// the one before has committed.
type ApplyConfig struct {
	RetryInitial, RetryMax time.Duration
	GroupBlocks            int           // blocks in a group, at most
	GroupBytes             int           // encoded bytes in a group, at most (a larger block is a group alone)
	GroupTime              time.Duration // a group's expected apply time, at most
	NoOverlap              bool
}

// ApplyOutcome is how a stage or a commit ended.
type ApplyOutcome int

const (
	ApplyOK       ApplyOutcome = iota // staged, or committed
	ApplyRejected                     // (stage) a block failed validation: those before it are staged, it and later ones not
	ApplyFailed                       // an I/O failure: nothing staged, or nothing committed; retried after a backoff
	ApplyClosed                       // the store is closing: nothing more to do
	ApplyStale                        // (commit) staged on a group that did not commit: nothing committed; staged again at once
)

// ApplyReady holds the effects of the steps since the last Ready.
type ApplyReady struct {
	// Stage blocks First..First+Count-1 now (Group returns them) as group
	// ID, then step Staged with the result, and once it is staged commit it
	// and step Applied. Count 0: nothing to stage.
	First    uint64
	Count    int
	ID       uint64
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
	// Staged: the stage of the group handed out ended so, after Took;
	// Accepted of its blocks are staged (all of them for ApplyOK, those
	// before the bad one for ApplyRejected, none otherwise). A group of
	// at least one block must then be committed.
	Staged struct {
		Outcome  ApplyOutcome
		Accepted int
		Took     time.Duration
		// Barrier: the next group can be validated only once this one
		// committed (store.Staged.WritesTrees), so none is handed out
		// before: a group formed then holds every block delivered
		// meanwhile.
		Barrier bool
	}
	// Applied: the commit of staged group ID ended so, after Took.
	Applied struct {
		ID      uint64
		Outcome ApplyOutcome
		Took    time.Duration
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

// Attempts is how many times in a row a write failed.
func (a *ApplyCore) Attempts() int { return a.attempts }

// Group returns the blocks of the group handed out, in order.
func (a *ApplyCore) Group() []any {
	off := a.stagedBlocks()
	out := make([]any, a.group)
	for i := range out {
		out[i] = a.queue[off+i].block
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
			a.handOut()
		}
	case Staged:
		if a.group == 0 {
			return // no group out: a stale result
		}
		done := min(max(e.Accepted, 0), a.group)
		switch e.Outcome {
		case ApplyOK:
			done = a.group
		case ApplyRejected:
			// The blocks after the bad one go back to the Fetcher,
			// which delivers again from it.
			a.ready.Rejected = true
			a.queue = a.queue[:a.stagedBlocks()+done]
		case ApplyFailed:
			a.group = 0
			a.fail(now)
			return
		case ApplyClosed:
			a.group = 0
			return
		}
		a.group = 0
		if done > 0 {
			a.staged = append(a.staged, stagedGroup{id: a.id, blocks: done, took: e.Took, barrier: e.Barrier})
		}
		a.afterStage()
	case Applied:
		if len(a.staged) == 0 || a.staged[0].id != e.ID {
			return // a group dropped after a commit before it failed
		}
		g := a.staged[0]
		switch e.Outcome {
		case ApplyOK:
			if a.attempts > 0 {
				a.ready.Resumed, a.attempts = a.attempts, 0
			}
			if took := g.took + e.Took; took > 0 {
				a.learn(took / time.Duration(g.blocks))
			}
			a.next += uint64(g.blocks)
			a.queue = append(a.queue[:0], a.queue[g.blocks:]...)
			a.staged = a.staged[1:]
			if !a.drain {
				a.handOut()
			}
		case ApplyFailed, ApplyStale:
			// The groups staged on it are stale too: all are staged
			// again from the committed tip.
			a.staged, a.group = a.staged[:0], 0
			if e.Outcome == ApplyFailed {
				a.fail(now)
			} else if !a.drain {
				a.handOut()
			}
		case ApplyClosed:
		}
	}
}

// afterStage follows a stage that ended: what arrived during it waits in the
// mailbox, so the next group is handed out at the drain after it (with
// nothing there, the drain finds nothing); with groups off, at once.
func (a *ApplyCore) afterStage() {
	if a.cfg.GroupBlocks == 1 {
		a.handOut()
		return
	}
	a.drain = true
	a.ready.Drain = true
}

// fail schedules the retry of a failed write.
func (a *ApplyCore) fail(now time.Time) {
	a.failed = true
	a.attempts++
	a.ready.Retried, a.ready.Attempts = true, a.attempts
	a.ready.RetryAt = now.Add(Backoff(a.attempts, a.cfg.RetryInitial, a.cfg.RetryMax, nil))
}

// stagedBlocks is how many of the queue's blocks are in staged groups.
func (a *ApplyCore) stagedBlocks() int {
	k := 0
	for _, g := range a.staged {
		k += g.blocks
	}
	return k
}

// handOut hands out the next group, if none is out and the commits under
// way leave room for one.
func (a *ApplyCore) handOut() {
	off := a.stagedBlocks()
	ahead := 2 // one committing, one waiting behind it
	if a.cfg.NoOverlap || (len(a.staged) > 0 && a.staged[len(a.staged)-1].barrier) {
		ahead = 1
	}
	if a.group > 0 || a.failed || len(a.staged) >= ahead || len(a.queue) == off {
		return
	}
	waiting := len(a.queue) - off
	bound := waiting // the blocks a group may hold, bytes aside
	if a.cfg.GroupBlocks > 0 {
		bound = min(bound, a.cfg.GroupBlocks)
	}
	if a.cfg.GroupTime > 0 && a.perBlock > 0 {
		bound = min(bound, max(1, int(a.cfg.GroupTime/a.perBlock)))
	}
	k, bytes := 0, 0
	for k < bound {
		bytes += a.queue[off+k].bytes
		if k > 0 && a.cfg.GroupBytes > 0 && bytes > a.cfg.GroupBytes {
			break
		}
		k++
	}
	if len(a.staged) > 0 && k == waiting && (a.cfg.GroupBlocks <= 0 || k < a.cfg.GroupBlocks) {
		// A commit is under way and the group is not full: the blocks
		// delivered until that commit ends join it. Staging a part
		// group now would only make more, smaller groups; the overlap
		// is for the full ones a catch-up brings.
		return
	}
	a.group = k
	a.id++
	a.ready.First, a.ready.Count, a.ready.ID = a.next+uint64(off), k, a.id
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
