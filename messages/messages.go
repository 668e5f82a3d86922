// Package messages holds every message the follower's actors exchange, each
// with its sender and receiver. Messages are plain values: an actor never
// shares mutable state with another, it sends what the other needs.
//
// Every message that belongs to a block's journey carries that block's trace
// context (Trace), so the stages of one block (fetched, verified, waited,
// applied, proven) join into one trace however many actors it crosses.
//
// Acknowledgements are cumulative (Applied carries the committed tip, not
// just the block), so a message lost when an actor panics and restarts can
// only delay the engine, never make it skip or repeat a block.
package messages

import (
	"time"

	"storesync/block"
	"storesync/state"
)

// Trace is a W3C trace context (traceparent, tracestate) carried as a map.
type Trace map[string]string

// Deliver hands the next block to apply.
// Sender: Fetcher. Receiver: Applier. Sent strictly in block order, at most
// as many unacknowledged as the Fetcher's credits allow.
type Deliver struct {
	Block     *block.Block // decoded; number and producer signature already checked
	Size      int          // encoded size in bytes
	Proof     []byte       // the block's proof when the upstream had one (include_proof)
	Upstream  string       // where it came from, to blame it if it fails validation
	FetchedAt time.Time    // when the fetch completed (queue wait starts here)
	Trace     Trace
}

// Applied reports a committed block and the new committed tip.
// Sender: Applier. Receivers: Fetcher (credits), ProofTracker (what may now
// be proven, and the block's timestamp for the proof schedule). The Applier also sends it to
// the Fetcher alone, with Block nil, when it drops a duplicate delivery: a
// bare acknowledgement of where the store is.
type Applied struct {
	Tip   uint64       // committed tip after this block (cumulative acknowledgement)
	Block *block.Block // nil in a bare acknowledgement
}

// Rejected reports a block that failed validation and was not applied.
// Sender: Applier. Receiver: Fetcher, which marks the upstream suspect and
// refetches the block, preferring another upstream.
type Rejected struct {
	Number   uint64
	Upstream string
	Check    state.Check
	Reason   string
}

// Resync tells the Fetcher to deliver from Next on: the Applier (re)started,
// or received a block out of order, and discarded what it had queued.
// Sender: Applier. Receiver: Fetcher.
type Resync struct {
	Next uint64
}

// ProofArrived passes on a proof that came along with a fetched block.
// Sender: Applier (after the block is committed). Receiver: ProofTracker.
type ProofArrived struct {
	Number uint64
	Proof  []byte
}

// ProofHolding tells the ProofTracker whether an upstream holds proof
// asks (answers when the proof is applied there): then a proof is asked for
// as soon as its block commits, not on the schedule that guesses when it
// will exist.
// Sender: Fetcher (when it changes). Receiver: ProofTracker.
type ProofHolding struct{ On bool }

// AskProofs asks for blocks to be fetched again for their proofs: the
// Fetcher owns every upstream's standing, so every call to an upstream is
// placed by it. Known marks proofs known to exist upstream (a later one was
// seen).
// Sender: ProofTracker. Receiver: Fetcher.
type AskProofs struct {
	Numbers []uint64
	Known   []bool
}

// AsksLost tells the ProofTracker that its asks in flight will never be
// answered: the Fetcher restarted and lost them. It asks again at once.
// Sender: Fetcher (at a restart). Receiver: ProofTracker.
type AsksLost struct{}

// ProofAnswer is the outcome of one ask of AskProofs.
// Sender: Fetcher. Receiver: ProofTracker.
type ProofAnswer struct {
	Number   uint64
	Known    bool
	Proof    []byte // verified against the block committed here; nil if none came
	BadProof string // a proof came and failed verification
	Lacking  bool   // the upstream does not have the block
	Failed   bool   // the call failed or the answer was bad
	Size     int    // block bytes fetched again for it
	Upstream string
	// UpstreamProven is the upstream's proven tip as its answer said (0:
	// it did not say): the proofs up to it exist, and are asked at once.
	UpstreamProven uint64
}

// TipHint tells the Fetcher that an upstream says it holds a block: its
// latest header, as the health poller counted it (checked against a signed
// block only when it is more than max-lag ahead). A caught-up Fetcher then
// fetches up to it at once instead of at its next probe; nothing else
// trusts it.
// Sender: the runtime's health poller (through Engine.TipSeen). Receiver: Fetcher.
type TipHint struct {
	Upstream string
	Tip      uint64
}

// UpstreamTip reports the highest block an upstream is known to hold.
// Sender: Fetcher. Receiver: Supervisor.
type UpstreamTip struct {
	Upstream string
	Tip      uint64
}
