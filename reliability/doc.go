// Package reliability holds the fault-injection tests: crash loops of the
// follower process, network faults through toxiproxy, hostile upstreams,
// disk errors. `make test` runs each in a short form; `make
// test-reliability` (STORESYNC_RELIABILITY=full) runs the long form whose
// figures RELIABILITY.md reports.
package reliability
