package runtime

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storesync/actors"
	"storesync/internal/testnet"
	"storesync/primary"
	"storesync/store"
)

func TestMain(m *testing.M) { testnet.VerifyNoLeaks(m) }

func quiet() *slog.Logger { return testnet.Quiet() }

// startPrimary runs a primary producing small blocks every interval.
func startPrimary(t *testing.T, interval time.Duration) *primary.Node {
	t.Helper()
	return testnet.StartPrimary(t, interval, nil).Node
}

// startStoppablePrimary also returns a function that stops it early.
func startStoppablePrimary(t *testing.T, interval time.Duration) (*primary.Node, func()) {
	t.Helper()
	p := testnet.StartPrimary(t, interval, nil)
	return p.Node, p.Stop
}

func genesisOf(p *primary.Node) string { return testnet.GenesisOf(p) }

// newFollower makes (but does not start) a follower of upstreams.
func newFollower(t *testing.T, dir, genesisPath string, hooks *actors.Hooks, upstreams ...string) *Follower {
	t.Helper()
	f, err := New(Config{
		DataDir: dir, Genesis: genesisPath, Upstreams: upstreams, Listen: "127.0.0.1:0", ShutdownGrace: time.Second,
		Engine: actors.Config{FetchWindow: 16, PollInterval: 20 * time.Millisecond, RetryInitial: 10 * time.Millisecond,
			RetryMax: 200 * time.Millisecond, FetchTimeout: 2 * time.Second, Hooks: hooks,
			Restart: actors.RestartPolicy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Limit: 50, Window: time.Minute}},
		Log: testnet.LogOnFailure(t, "follower in "+filepath.Base(dir)+" of "+strings.Join(upstreams, ",")),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// startFollower starts a follower and stops it when the test ends.
func startFollower(t *testing.T, f *Follower) {
	t.Helper()
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := f.Stop(); err != nil {
				t.Error(err)
			}
		}
	})
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testnet.WaitFor(t, within, what, cond)
}

// sameChain checks that b holds exactly a's blocks up to b's tip.
func sameChain(t *testing.T, a, b *store.Store) {
	t.Helper()
	testnet.SameChain(t, a, b)
}

// TestChainedFollowersConverge: a primary producing blocks, a follower of
// the primary and a follower of that follower end with identical
// commitments and roots at every height, proven tips included.
func TestChainedFollowersConverge(t *testing.T) {
	p := startPrimary(t, 15*time.Millisecond)
	f1 := newFollower(t, t.TempDir(), genesisOf(p), nil, p.PublicAddr())
	startFollower(t, f1)
	f2 := newFollower(t, t.TempDir(), genesisOf(p), nil, f1.Addr())
	startFollower(t, f2)
	waitFor(t, 30*time.Second, "the primary to prove 40 blocks", func() bool { _, pr := p.Store().Tips(); return pr >= 40 })
	target, proven := p.Store().Tips()
	waitFor(t, 30*time.Second, "both followers to catch up", func() bool {
		c1, p1 := f1.Store().Tips()
		c2, p2 := f2.Store().Tips()
		return c1 >= target && c2 >= target && p1 >= proven && p2 >= proven
	})
	sameChain(t, p.Store(), f1.Store())
	sameChain(t, p.Store(), f2.Store())
	for _, f := range []*Follower{f1, f2} {
		sn := f.Store().Snapshot()
		for n := uint64(1); n <= proven; n++ {
			want, _ := p.Store().Snapshot().ProofBytes(n)
			got, err := sn.ProofBytes(n)
			if err != nil || string(got) != string(want) {
				t.Fatalf("proof %d differs on a follower: %v", n, err)
			}
		}
	}
	// The local tips are the store's; the Supervisor's view of the
	// upstream's tip follows the Fetcher's reports: shortly.
	waitFor(t, 10*time.Second, "the store's tips and the supervisor's view of the upstream to reach the tip", func() bool {
		c, pr := f2.Store().Tips()
		return c >= target && pr >= proven && f2.Engine().View().UpstreamTip >= target
	})
}
