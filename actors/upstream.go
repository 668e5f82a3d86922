package actors

import "context"

// Upstream is what the engine needs from another store: its read API's
// GetBlockByNumber. runtime provides the gRPC implementation.
type Upstream interface {
	// Name identifies the upstream in logs, metrics and suspicion.
	Name() string
	// GetBlock returns block n and, if includeProof and the upstream has it,
	// its proof. block is nil when n is past the upstream's tip.
	GetBlock(ctx context.Context, n uint64, includeProof bool) (block, proof []byte, err error)
}
