// Package actors is the follower's sync engine: four actors on
// protoactor-go that copy an upstream store block by block.
//
//	            Applied, Rejected, Resync
//	   +--------------------------------------+
//	   v                                      |
//	Fetcher ---- Deliver (in order) ----> Applier ---- store.ApplyBlock
//	   |  GetBlockByNumber(n, proof)          |
//	   |  (window tip+1..tip+W)               | Applied, ProofArrived
//	   |                                      v
//	   |                               ProofTracker ---- store.ApplyProof
//	   |                                      |   GetBlockByNumber(proven+1, proof)
//	   +-- UpstreamTip --> Supervisor <-- Proven
//	                          ^ Applied
//
// The Supervisor spawns the other three as its children and restarts each
// alone when it fails (one for one, capped exponential backoff); a child
// that fails more than the policy's limit within its window stops the
// engine with a fatal error. It keeps the follower's view of the tips.
//
// The Fetcher keeps blocks tip+1..tip+W in flight (bounded in count and
// bytes), decodes them and checks number and producer signature off the
// apply path, and hands them to the Applier strictly in order with credit
// flow control: mailboxes are unbounded, the Fetcher simply never has more
// than Credits deliveries unacknowledged. The Applier applies them one at a
// time with the store's ApplyBlock, the primary's own code path. The
// ProofTracker applies proofs that came with blocks and asks for the ones
// that did not, on an adaptive schedule.
//
// Local state is the cursor: every actor rebuilds its state from the store
// when it starts or restarts, and acknowledgements are cumulative, so a
// message lost in a crash (protoactor drops the message that caused a panic)
// can only delay the engine, never make it skip or repeat a block.
//
// The decision logic of each actor (Window, Upstreams, ProofSchedule,
// RestartPolicy) is plain code in its own file, tested without actors.
package actors
