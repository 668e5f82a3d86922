package sim

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The grid the property tests run: a few seeds in make test, many more with
// STORESYNC_SIM=full (go test ./sim/ -run Property).
func grid(t *testing.T) (seeds, blocks int) {
	if os.Getenv("STORESYNC_SIM") == "full" {
		return 20, 2000
	}
	if testing.Short() {
		return 1, 400
	}
	return 3, 600
}

// each runs every condition of the grid whose name has prefix, for every
// seed, and checks it.
func each(t *testing.T, prefix string, check func(t *testing.T, c Condition, r *Report)) {
	seeds, blocks := grid(t)
	ran := 0
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		for _, c := range Conditions(seed, blocks) {
			if !strings.HasPrefix(c.Name, prefix) {
				continue
			}
			ran++
			r := Run(c.Cfg)
			c.Cfg.defaults() // the checks read the engine's defaults
			t.Run(fmt.Sprintf("%s/seed=%d", c.Name, seed), func(t *testing.T) { check(t, c, r) })
		}
	}
	if ran == 0 {
		t.Fatalf("no condition named %q*", prefix)
	}
}

// TestPropertyProofsAtTheFloor: at every proof delay from 0 to 60 s with
// ±25% jitter and block intervals from 0.25 to 5 s, the engine fetches at
// most 2.05 bytes per useful byte, and when proofs come with their blocks
// nothing beyond the API's floor (one more fetch of a block per proof made
// after the block was fetched: a poll may find a block in the moments
// before its proof); its proven tip trails the primary's by at most the
// jitter's full range plus one block interval (p99).
func TestPropertyProofsAtTheFloor(t *testing.T) {
	each(t, "proofs ", func(t *testing.T, c Condition, r *Report) {
		f := r.Followers[0]
		if !f.Complete {
			t.Fatalf("not every block and proof applied by the end")
		}
		if f.BytesPerUseful > 2.05 {
			t.Errorf("fetched %.3f bytes per useful byte, want at most 2.05", f.BytesPerUseful)
		}
		if c.Cfg.ProofDelay == 0 && f.BytesPerFloor > 1.001 {
			t.Errorf("fetched %.4f bytes per byte of the floor (%d late proofs), want at most 1.001", f.BytesPerFloor, f.LateProofs)
		}
		if want := 2*c.Cfg.ProofJitter + c.Cfg.BlockInterval; f.ProofLagP99 > want {
			t.Errorf("proven tip %s behind the primary's (p99), want at most %s", f.ProofLagP99, want)
		}
	})
}

// TestPropertyNaiveLoopIsWorse: the design note's loop, in the same
// conditions, fetches several times the bytes.
func TestPropertyNaiveLoopIsWorse(t *testing.T) {
	each(t, "naive loop", func(t *testing.T, c Condition, r *Report) {
		if f := r.Followers[0]; f.BytesPerUseful < 3 {
			t.Errorf("the naive loop fetched only %.2f bytes per useful byte; the comparison is meaningless", f.BytesPerUseful)
		}
	})
}

// TestPropertyCaughtUpCalls: caught up, the engine's calls to all its
// upstreams together are at most one probe per poll interval plus two per
// block (the block, and its proof when it came later), plus its misses and
// hedges (a tenth of a call per block here).
func TestPropertyCaughtUpCalls(t *testing.T) {
	each(t, "proofs ", func(t *testing.T, c Condition, r *Report) {
		f := r.Followers[0]
		probes := float64(c.Cfg.BlockInterval) / float64(c.Cfg.Engine.PollInterval)
		if want := probes + 2 + 0.1; f.CallsPerBlock > want {
			t.Errorf("%.2f calls per block, want at most %.2f (%.1f probes + 2 + misses)", f.CallsPerBlock, want, probes)
		}
	})
}

// TestPropertyOneBadUpstream: beside an honest upstream, one that stalls 1
// call in 30 for 20 s, is 10x slower, lies, fails or goes away costs
// nothing: within max-lag in at least 99% of samples, never a fetch
// timeout's worth of blocks behind, readiness steady, every block and proof
// applied, the proof budget kept.
func TestPropertyOneBadUpstream(t *testing.T) {
	check := func(t *testing.T, c Condition, r *Report) {
		f := r.Followers[0]
		if !f.Complete {
			t.Fatalf("not every block and proof applied by the end")
		}
		if f.WithinMaxLag < 0.99 {
			t.Errorf("within max-lag %.1f%% of the time, want at least 99%%", 100*f.WithinMaxLag)
		}
		if behind := float64(c.Cfg.Engine.FetchTimeout / c.Cfg.BlockInterval); f.LagMax >= behind {
			t.Errorf("%.0f blocks behind at worst: a whole fetch timeout (%.0f blocks)", f.LagMax, behind)
		}
		if f.Flips > 0 {
			t.Errorf("readiness flipped %d times", f.Flips)
		}
		if f.BytesPerUseful > 2.1 {
			t.Errorf("fetched %.3f bytes per useful byte", f.BytesPerUseful)
		}
		if want := 2*c.Cfg.ProofJitter + c.Cfg.BlockInterval; f.ProofLagP99 > want {
			t.Errorf("proven tip %s behind the primary's (p99), want at most %s", f.ProofLagP99, want)
		}
		// A liar whose lies reached the engine is marked suspect. (Blocks
		// that fail ApplyBlock reach it only through block fetches, which
		// may all go to the other upstream once caught up.)
		lied := strings.Contains(c.Name, "lies") && !strings.Contains(c.Name, "empty") && !strings.Contains(c.Name, "ApplyBlock")
		if (lied || f.Rejected > 0) && f.Suspected[1] == 0 {
			t.Errorf("the lying upstream was never marked suspect (%d blocks rejected)", f.Rejected)
		}
		if f.Suspected[0] > 0 {
			t.Errorf("the honest upstream was marked suspect %d times", f.Suspected[0])
		}
	}
	each(t, "one upstream", check)
	each(t, "two honest", check)
	each(t, "held: one upstream", check)
}

// TestPropertyHeldCalls: with an upstream that holds calls, a caught-up
// follower commits each block within the apply, two round trips and 10 ms
// of the primary (p99), proves each within a few round trips and a batch
// wait of the primary, and makes about one call per block plus one per
// proof that did not come with its block, fetching no byte beyond that
// floor; whatever the poll interval (it polls no more). Where proofs are
// made moments after their blocks, held probes wait a grace for them, and
// only the blocks before the grace is learned come without their proofs.
func TestPropertyHeldCalls(t *testing.T) {
	each(t, "held: proofs ", func(t *testing.T, c Condition, r *Report) {
		f := r.Followers[0]
		l := c.Cfg.Followers[0].Upstreams[0]
		rtt := l.RTT + l.Jitter
		if !f.Complete {
			t.Fatalf("not every block and proof applied by the end")
		}
		if want := c.Cfg.ApplyTime + 2*rtt + 10*time.Millisecond; f.CommitP99 > want {
			t.Errorf("commit %s behind the primary (p99), want at most %s (apply + 2 RTT + 10ms)", f.CommitP99, want)
		}
		if want := 4*rtt + 50*time.Millisecond; f.ProofLagP99 > want {
			t.Errorf("proven tip %s behind the primary's (p99), want at most %s", f.ProofLagP99, want)
		}
		calls, bytes := 2.05, 2.05
		if c.Cfg.ProofDelay == 0 {
			calls, bytes = 1.05, 1.01
			if f.LateProofs > 4 || f.BytesPerFloor > 1.001 {
				t.Errorf("%d blocks came without their proofs (want at most 4, the grace's learning), %.4f bytes per byte of the floor (want at most 1.001)", f.LateProofs, f.BytesPerFloor)
			}
		}
		if f.CallsPerBlock > calls || f.BytesPerUseful > bytes {
			t.Errorf("%.2f calls per block and %.3f bytes per useful byte, want at most %.2f and %.3f", f.CallsPerBlock, f.BytesPerUseful, calls, bytes)
		}
	})
}

// TestPropertyHeldChain: down a chain of followers whose upstreams hold
// calls, each link adds at most one apply and one round trip to the
// commit latency (p99).
func TestPropertyHeldChain(t *testing.T) {
	each(t, "held: chain", func(t *testing.T, c Condition, r *Report) {
		var prev time.Duration
		for i, f := range r.Followers {
			l := c.Cfg.Followers[i].Upstreams[0]
			if add := f.CommitP99 - prev; add > c.Cfg.ApplyTime+l.RTT+l.Jitter+2*time.Millisecond {
				t.Errorf("follower %d adds %s to its upstream's commit latency (p99 %s), want at most an apply and a round trip", i, add, f.CommitP99)
			}
			prev = f.CommitP99
		}
	})
}

// TestPropertyChainAndCatchUp: a follower of a follower keeps up, and a
// long catch-up ends caught up with everything applied.
func TestPropertyChainAndCatchUp(t *testing.T) {
	check := func(t *testing.T, c Condition, r *Report) {
		for i, f := range r.Followers {
			if !f.Complete {
				t.Fatalf("follower %d: not every block and proof applied", i)
			}
			if f.WithinMaxLag < 0.99 || f.Flips > 0 {
				t.Errorf("follower %d: within max-lag %.1f%%, %d flips", i, 100*f.WithinMaxLag, f.Flips)
			}
		}
	}
	each(t, "chain", check)
	each(t, "held: chain", check)
	each(t, "catch-up", check)
}

// TestDeterministic: a run is a function of its configuration and seed.
func TestDeterministic(t *testing.T) {
	c := Conditions(7, 300)
	for _, i := range []int{8, 18, 21} {
		a, b := Run(c[i].Cfg), Run(c[i].Cfg)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: two runs of seed 7 differ:\n%+v\n%+v", c[i].Name, a.Followers[0], b.Followers[0])
		}
	}
}

// TestSimulatedTime: the simulator runs in simulated time: a run of 400
// blocks one second apart covers at least 400 s, whatever the wall clock.
func TestSimulatedTime(t *testing.T) {
	r := Run(Base(1, 400, time.Second, 2*time.Second))
	if r.Simulated < 380*time.Second {
		t.Fatalf("simulated %s for 380 blocks a second apart", r.Simulated)
	}
}
