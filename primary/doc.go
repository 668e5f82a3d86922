// Package primary is the primary node: a store, the public read API, the
// internal write path on its own listener, a block producer and a prover.
//
// The producer builds blocks with the workload generator at a fixed
// interval and commits them through the store's ApplyBlock, the same code
// path followers use. The prover proves committed blocks strictly in order,
// each a configured delay (with jitter) after the block's timestamp, so proofs
// lag commits as in the real system.
package primary
