package actors

import (
	"time"
)

// ApplyCore is the Applier's decision logic as a deterministic state
// machine: which delivered block to apply, what to tell the others after,
// when to try again after a failed write. The Applier actor applies the
// blocks (store.ApplyBlock) and sends the messages. thread-compatible.
type ApplyCore struct {
	cfg      ApplyConfig
	next     uint64 // the block number the store expects
	pending  any    // a block whose write failed, retried at retryAt
	attempts int
	dropped  bool // deliveries were dropped while a block was pending
	ready    ApplyReady
	out      ApplyReady
}

// ApplyConfig configures an ApplyCore.
type ApplyConfig struct {
	RetryInitial, RetryMax time.Duration
}

// ApplyOutcome is how an apply ended.
type ApplyOutcome int

const (
	ApplyOK       ApplyOutcome = iota // committed
	ApplyRejected                     // failed validation: never applied
	ApplyFailed                       // an I/O failure: retried after a backoff
	ApplyClosed                       // the store is closing: nothing more to do
)

// ApplyReady holds the effects of the steps since the last Ready.
type ApplyReady struct {
	Apply    any    // apply this block now, then step Applied with the result
	Acked    uint64 // tell the Fetcher the committed tip (a bare acknowledgement; 0: none)
	Resync   uint64 // tell the Fetcher to deliver from here (0: none)
	Rejected bool   // the block applied last failed validation: tell the Fetcher
	Retried  bool   // a write failed: RetryAt is set; Attempts counts them
	RetryAt  time.Time
	Attempts int
	Resumed  int // applying works again after this many failed attempts (0: it never stopped)
}

// Events of the ApplyCore.
type (
	// Delivered: block N from the Fetcher.
	Delivered struct {
		N     uint64
		Block any
	}
	// Applied: the apply of block N ended so.
	Applied struct {
		N       uint64
		Outcome ApplyOutcome
		Block   any // kept for the retry when the write failed
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

// Attempts is how many times in a row the pending block's write failed.
func (a *ApplyCore) Attempts() int { return a.attempts }

// Ready returns the effects since the last call and clears them.
func (a *ApplyCore) Ready() *ApplyReady {
	a.out, a.ready = a.ready, ApplyReady{}
	return &a.out
}

// Step applies one event at now.
func (a *ApplyCore) Step(now time.Time, ev any) {
	switch e := ev.(type) {
	case Delivered:
		switch {
		case e.N < a.next:
			// A duplicate from before a resync: already applied. The ack
			// tells the Fetcher where the store is, so its credits are right.
			a.ready.Acked = a.next - 1
		case a.pending != nil:
			a.dropped = true // redelivered after the pending block is in
		case e.N > a.next:
			a.ready.Resync = a.next // a gap: something was lost
		default:
			a.ready.Apply = e.Block
		}
	case RetryDue:
		if a.pending != nil {
			a.ready.Apply, a.pending = a.pending, nil
		}
	case Applied:
		switch e.Outcome {
		case ApplyOK:
			if a.attempts > 0 {
				a.ready.Resumed, a.attempts = a.attempts, 0
			}
			a.next = e.N + 1
			if a.dropped {
				a.dropped = false
				a.ready.Resync = a.next
			}
		case ApplyRejected:
			a.ready.Rejected = true
		case ApplyFailed:
			a.pending = e.Block
			a.attempts++
			a.ready.Retried, a.ready.Attempts = true, a.attempts
			a.ready.RetryAt = now.Add(Backoff(a.attempts, a.cfg.RetryInitial, a.cfg.RetryMax, nil))
		}
	}
}
