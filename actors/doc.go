// Package actors is the follower's sync engine: four actors on
// protoactor-go that copy an upstream store block by block.
//
//	            Applied, Rejected, Resync
//	   +--------------------------------------+
//	   v                                      |
//	Fetcher ---- Deliver (in order) ----> Applier ---- store.ApplyBlock
//	 |  ^  GetBlockByNumber(n, proof)         |
//	 |  |  (window tip+1..tip+W, hedged)      | Applied, ProofArrived
//	 |  |                                     v
//	 |  +------ AskProofs ----------- ProofTracker ---- store.ApplyProofs
//	 |  ------- ProofAnswer --------->
//	 +-- UpstreamTip --> Supervisor
//
// The Supervisor spawns the other three as its children and restarts each
// alone when it fails (one for one, capped exponential backoff); a child
// that fails more than the policy's limit within its window stops the
// engine with a fatal error.
//
// # Cores and shells
//
// Each actor is a thin shell around a decision core, a deterministic state
// machine in the shape of etcd raft: Step(now, event) changes its state,
// Ready() hands over the effects (start a call to upstream u for block n
// within a timeout, cancel a call, deliver n, ask the proof of n, apply a
// batch of proofs, arm the timer at t, mark an upstream, write a log line).
// A core reads no clock, calls no store, starts no goroutine and sends no
// message; the shell turns messages into events and carries out effects,
// nothing else. So the cores are tested event by event without an actor
// system, and the simulator (package sim) runs the very same cores against
// simulated time and upstreams.
//
//   - FetchCore (fetcher.go's core) owns the block Window (what to fetch,
//     what to deliver, when to probe past the tip) and the Book, the one
//     model of every upstream's standing. It places the ProofTracker's
//     proof asks too, so that block fetches and proof asks learn from each
//     other.
//   - ProofCore (prooftracker.go's) advances the proven tip in order, from
//     proofs that came with blocks and from asks on the ProofSchedule.
//   - ApplyCore (applier.go's) orders deliveries, forms groups and retries
//     failed writes.
//   - RestartPolicy (supervisor.go's) decides restarts.
//
// The Fetcher keeps blocks tip+1..tip+W in flight (bounded in count and
// bytes, and per upstream by a congestion window), decodes them and checks
// number and producer signature off the apply path, hedges a late call at
// the head of the line on a second upstream, and hands blocks to the
// Applier strictly in order with credit flow control: mailboxes are
// unbounded, the Fetcher simply never has more than Credits deliveries
// unacknowledged. The Applier applies the consecutive blocks waiting for it
// as one group with the store's ApplyBlocks (each block by the primary's
// own checks, one commit for the group; caught up, a group is one block).
//
// Local state is the cursor: every actor rebuilds its core from the store
// when it starts or restarts, and acknowledgements are cumulative, so a
// message lost in a crash (protoactor drops the message that caused a panic)
// can only delay the engine, never make it skip or repeat a block.
package actors
