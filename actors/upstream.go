package actors

import (
	"context"
	"time"
)

// Upstream is what the engine needs from another store: its read API's
// GetBlockByNumber. runtime provides the gRPC implementation.
type Upstream interface {
	// Name identifies the upstream in logs, metrics and suspicion.
	Name() string
	// GetBlock returns block n and, if includeProof and the upstream has it,
	// its proof. block is nil when n is past the upstream's tip.
	GetBlock(ctx context.Context, n uint64, includeProof bool) (block, proof []byte, err error)
}

// Holding is an Upstream that can ask its store to hold a call until what
// it wants exists (the read API's storesync-hold metadata), and can tell
// from an answer whether the store holds calls and how far it has proofs.
type Holding interface {
	// GetBlockHeld is GetBlock, asking the store to hold the call as hold
	// says (its zero value asks no hold).
	GetBlockHeld(ctx context.Context, n uint64, includeProof bool, hold HoldAsk) (HeldAnswer, error)
}

// HoldAsk is what a call asks its store to hold it for: for up to Wait,
// until block n commits (Kind HoldBlock; then up to Grace more for its
// proof), or until its proof is applied (HoldProof). Kind "": no hold.
type HoldAsk struct {
	Kind        string
	Wait, Grace time.Duration
}

// What a call may ask an upstream to hold it for (the read API's values).
const (
	HoldBlock = "block"
	HoldProof = "proof"
)

// HeldAnswer is an answer of a Holding upstream.
type HeldAnswer struct {
	Block, Proof []byte // Block nil: past the upstream's tip
	// Known: the answer said whether its store holds calls: HoldMax, its
	// longest hold (0: it does not), and Proven, its proven tip.
	Known   bool
	HoldMax time.Duration
	Proven  uint64
	// Released: when the store released the call, if it held it (its
	// clock: the Fetcher clamps it into the call's own span); zero: it
	// answered at once.
	Released time.Time
}

// Reconnecting is an Upstream that can tell when its connection is back
// after a failure. The Fetcher then asks it again at once instead of waiting
// out the backoffs the outage built up (its own, per upstream and per block,
// up to RetryMax): the link's own reconnection already paced the attempts.
type Reconnecting interface {
	// Reconnected blocks until the upstream's connection turns ready after
	// it was not, and reports true; false once ctx is done.
	Reconnected(ctx context.Context) bool
}
