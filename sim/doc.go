// Package sim runs the sync engine's decision cores (actors.FetchCore,
// actors.ProofCore, actors.ApplyCore, the health Tracker) against
// simulated time, a simulated primary (block interval, block sizes, a prover
// that proves in order after a delay with jitter) and simulated upstreams
// (round-trip time with jitter, bandwidth, errors, stalls, lies, outages, a
// chain of followers), deterministic from a seed. It runs the very cores
// the actors run, not a model of them: what it shows of lag, bytes and
// calls is what the engine decides.
//
// One Run is one deployment for a while: every follower's lag sampled every
// 100 ms of simulated time, its proven-tip lag, the bytes it fetched
// (useful and redundant), the calls it made per block while caught up, and
// what it held against each upstream. Grid runs many conditions side by
// side; cmd/storesim prints the table.
//
// What is simulated and what is not: the cores see exactly the events the
// actors would give them, with the times they would have; a call's answer
// comes after its round trip plus its bytes over the bandwidth, or never
// (a stall), and the apply path is a single queue with a fixed cost per
// block. Message passing between actors is instantaneous (it takes
// microseconds in the real engine), and the store never fails.
package sim
