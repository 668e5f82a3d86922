package reliability

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"storesync/actors"
	"storesync/internal/testnet"
	"storesync/runtime"
)

// TestActorPanicsDuringLongSync: panics injected in every actor at random
// messages (seeded) while a follower catches up and then follows a primary.
// Each panic restarts that actor alone (the Supervisor's view counts exactly
// the injected failures; a worker starts once plus once per own panic), and
// the follower ends with the primary's exact chain, proofs included.
func TestActorPanicsDuringLongSync(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	each := scaled(4, 50) // panics per actor
	names := []string{actors.SupervisorName, actors.FetcherName, actors.ApplierName, actors.ProofTrackerName}
	budget := each * len(names)
	p := testnet.StartPrimary(t, 20*time.Millisecond, nil)
	testnet.WaitFor(t, 30*time.Second, "a backlog of 100 blocks", func() bool { c, _ := p.Store().Tips(); return c >= 100 })

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 3))
	panics, starts := map[string]int{}, map[string]int{}
	injected := 0
	hooks := &actors.Hooks{
		Started: func(a string) { mu.Lock(); starts[a]++; mu.Unlock() },
		Receive: func(a string, msg any) {
			mu.Lock()
			hit := panics[a] < each && rng.IntN(100) == 0
			if hit {
				injected++
				panics[a]++
			}
			mu.Unlock()
			if hit {
				panic(fmt.Sprintf("injected failure in %s at %T", a, msg))
			}
		},
	}
	dir := t.TempDir()
	f, err := runtime.New(runtime.Config{
		DataDir: dir, Genesis: testnet.GenesisOf(p.Node), Upstreams: []string{p.PublicAddr()}, Listen: "127.0.0.1:0",
		ShutdownGrace: time.Second,
		Engine: actors.Config{Hooks: hooks, PollInterval: 20 * time.Millisecond,
			// Tolerant enough that the injected failures never add up to
			// the give-up the storm test checks.
			Restart: actors.RestartPolicy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Limit: 10 * budget, Window: time.Minute}},
		Log: testnet.LogOnFailure(t, "follower in "+filepath.Base(dir)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop() })
	start := time.Now()
	testnet.WaitFor(t, scaled(60*time.Second, 10*time.Minute), "every injected panic", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return injected == budget
	})
	select {
	case err := <-f.Engine().Fatal():
		t.Fatalf("the engine gave up: %v", err)
	default:
	}
	target, proven := p.Store().Tips()
	testnet.WaitFor(t, 60*time.Second, "the follower to catch up and prove after the panics", func() bool {
		c, pr := f.Store().Tips()
		return c >= target && pr >= proven
	})
	testnet.SameChain(t, p.Store(), f.Store())
	for n := uint64(1); n <= proven; n++ {
		want, _ := p.Store().Snapshot().ProofBytes(n)
		got, err := f.Store().Snapshot().ProofBytes(n)
		if err != nil || string(got) != string(want) {
			t.Fatalf("proof %d differs: %v", n, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	view := f.Engine().View()
	for _, a := range names {
		if view.Restarts[a] != panics[a] {
			t.Errorf("%s: %d restarts counted for %d panics", a, view.Restarts[a], panics[a])
		}
		if a != actors.SupervisorName && starts[a] != 1+panics[a] {
			t.Errorf("%s started %d times for %d panics of its own: restarts were not one-for-one", a, starts[a], panics[a])
		}
	}
	pc, ppr := p.Store().Tips()
	c, pr := f.Store().Tips()
	t.Logf("%d panics (%v) over %s; compared up to %d/%d; at the end the follower at %d/%d, the primary at %d/%d", injected, panics,
		time.Since(start).Round(time.Millisecond), target, proven, c, pr, pc, ppr)
}
