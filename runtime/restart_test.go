package runtime

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"storesync/actors"
	"storesync/messages"
)

// TestRestartResumesFromOwnTip: a follower stopped mid-sync and started
// again on the same data directory resumes from its own tip: every block
// once, no gap (the store would reject a gap), nothing applied twice.
func TestRestartResumesFromOwnTip(t *testing.T) {
	p := startPrimary(t, 10*time.Millisecond)
	waitFor(t, 30*time.Second, "60 blocks on the primary", func() bool { c, _ := p.Store().Tips(); return c >= 60 })
	dir := t.TempDir()
	f := newFollower(t, dir, genesisOf(p), nil, p.PublicAddr())
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the follower to be mid-sync", func() bool { c, _ := f.Store().Tips(); return c >= 20 })
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	// Stopping again is harmless (it once panicked in the actor system).
	if err := f.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	// The second run reports every block it commits, in order, to the
	// Fetcher (a bare acknowledgement of a duplicate has no Block): they
	// must start right after the tip it reopened at and follow one another
	// with no gap and no repeat.
	var mu sync.Mutex
	var applied []uint64
	hooks := &actors.Hooks{Receive: func(a string, msg any) {
		if m, ok := msg.(*messages.Applied); ok && a == actors.FetcherName && m.Block != nil {
			mu.Lock()
			applied = append(applied, m.Tip)
			mu.Unlock()
		}
	}}
	f = newFollower(t, dir, genesisOf(p), hooks, p.PublicAddr())
	resumedAt, _ := f.Store().Tips()
	if resumedAt < 20 {
		t.Fatalf("reopened at %d, below the 20 blocks committed before the stop", resumedAt)
	}
	startFollower(t, f)
	target, _ := p.Store().Tips()
	waitFor(t, 30*time.Second, "the restarted follower to catch up", func() bool { c, _ := f.Store().Tips(); return c >= target })
	sameChain(t, p.Store(), f.Store())
	mu.Lock()
	defer mu.Unlock()
	if len(applied) == 0 || applied[0] != resumedAt+1 {
		t.Fatalf("resumed at %d but first committed %v", resumedAt, applied[:min(len(applied), 3)])
	}
	for i := 1; i < len(applied); i++ {
		if applied[i] != applied[i-1]+1 {
			t.Fatalf("committed %d after %d", applied[i], applied[i-1])
		}
	}
}

// TestPanicRestartsOnlyThatActor: for each of the four actors, a panic
// injected into its message handling restarts that actor alone: the others
// are not restarted (they start exactly once) and keep working, and the
// follower ends with the primary's exact state, proofs included.
func TestPanicRestartsOnlyThatActor(t *testing.T) {
	p := startPrimary(t, 10*time.Millisecond)
	for _, victim := range []string{actors.SupervisorName, actors.FetcherName, actors.ApplierName, actors.ProofTrackerName} {
		t.Run(victim, func(t *testing.T) {
			var mu sync.Mutex
			starts := map[string]int{}
			var seen, panics atomic.Int32
			hooks := &actors.Hooks{
				Started: func(a string) { mu.Lock(); starts[a]++; mu.Unlock() },
				Receive: func(a string, msg any) {
					// Panic on the 30th and 31st message the victim handles.
					if a == victim {
						if k := seen.Add(1); k == 30 || k == 31 {
							panics.Add(1)
							panic(fmt.Sprintf("injected failure in %s", a))
						}
					}
				},
			}
			f := newFollower(t, t.TempDir(), genesisOf(p), hooks, p.PublicAddr())
			startFollower(t, f)
			waitFor(t, 30*time.Second, "both injected panics", func() bool { return panics.Load() == 2 })
			before, beforeProven := f.Store().Tips()
			target, _ := p.Store().Tips()
			waitFor(t, 30*time.Second, "the follower to catch up after the panics", func() bool {
				c, pr := f.Store().Tips()
				return c >= target+5 && pr > beforeProven
			})
			if c, _ := f.Store().Tips(); c <= before {
				t.Fatalf("no progress after the panics")
			}
			sameChain(t, p.Store(), f.Store())
			mu.Lock()
			defer mu.Unlock()
			for _, a := range []string{actors.SupervisorName, actors.FetcherName, actors.ApplierName, actors.ProofTrackerName} {
				want := 1
				if a == victim && a != actors.SupervisorName {
					want = 3 // started, then restarted after each panic
				}
				if starts[a] != want {
					t.Errorf("%s started %d times, want %d (victim %s)", a, starts[a], want, victim)
				}
			}
			if r := f.Engine().View().Restarts[victim]; r != 2 {
				t.Errorf("view counts %d restarts of %s, want 2", r, victim)
			}
		})
	}
}

// TestRestartStormIsFatal: an actor that fails on every message ends the
// engine with the clear fatal error the policy promises, not a hang.
func TestRestartStormIsFatal(t *testing.T) {
	p := startPrimary(t, 10*time.Millisecond)
	hooks := &actors.Hooks{Receive: func(a string, msg any) {
		if a == actors.ApplierName {
			panic("always failing")
		}
	}}
	f := newFollower(t, t.TempDir(), genesisOf(p), hooks, p.PublicAddr())
	startFollower(t, f)
	select {
	case err := <-f.Engine().Fatal():
		if err == nil || !strings.Contains(err.Error(), "applier failed") || !strings.Contains(err.Error(), "giving up") {
			t.Fatalf("fatal error %q does not say which actor gave up", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a restart storm did not end in a fatal error")
	}
}

// TestFailover: with two upstreams, stopping one does not stop the sync.
func TestFailover(t *testing.T) {
	p := startPrimary(t, 10*time.Millisecond)
	a := newFollower(t, t.TempDir(), genesisOf(p), nil, p.PublicAddr())
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	aStopped := false
	t.Cleanup(func() {
		if !aStopped {
			a.Stop()
		}
	})
	b := newFollower(t, t.TempDir(), genesisOf(p), nil, a.Addr(), p.PublicAddr())
	startFollower(t, b)
	waitFor(t, 30*time.Second, "b to sync 30 blocks", func() bool { c, _ := b.Store().Tips(); return c >= 30 })
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	aStopped = true
	target, _ := p.Store().Tips()
	waitFor(t, 30*time.Second, "b to keep syncing from the primary alone", func() bool { c, _ := b.Store().Tips(); return c >= target+20 })
	sameChain(t, p.Store(), b.Store())
}
