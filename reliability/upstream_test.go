package reliability

import (
	"testing"
	"time"

	"storesync/internal/testnet"
)

// TestPrimaryRestartMidSync: the primary stops and comes back on the same
// directory and address, several times while a follower syncs from it. The
// follower rides over each outage (nothing applied twice, nothing lost) and
// resumes on its own; the time from the primary's return to the follower's
// next block is measured.
func TestPrimaryRestartMidSync(t *testing.T) {
	p := testnet.StartPrimary(t, 20*time.Millisecond, nil)
	f := startNetworkFollower(t, p.PublicAddr(), testnet.GenesisOf(p.Node))
	committed := func() uint64 { c, _ := f.Store().Tips(); return c }
	testnet.WaitFor(t, 30*time.Second, "the follower to sync 20 blocks", func() bool { return committed() >= 20 })
	restarts := scaled(3, 10)
	var resumed []time.Duration
	for i := range restarts {
		p.Stop()
		down, _ := p.Store().Tips()
		// While the primary is away the follower keeps what it has; it
		// holds at most what the primary committed (the last blocks may
		// have been committed after its last poll).
		if c := committed(); c > down {
			t.Fatalf("restart %d: the follower is at %d, past the stopped primary's %d", i, c, down)
		}
		p = testnet.RunPrimary(t, p.Config)
		back := time.Now()
		testnet.WaitFor(t, 60*time.Second, "the follower to resume after the primary's restart", func() bool { return committed() > down })
		resumed = append(resumed, time.Since(back))
		testnet.WaitFor(t, 30*time.Second, "the follower to go 10 blocks further", func() bool { return committed() >= down+10 })
	}
	testnet.SameChain(t, p.Store(), f.Store())
	t.Logf("primary restarts: %d; time from the primary's return to the follower's next block: %v", restarts, resumed)
}

// TestUpstreamReplaced: the follower's upstream address (a load balancer's,
// here a proxy) is moved from one store to another at the same height, and
// then to one that is behind. The follower goes on from its own tip with
// whatever store answers, and ends on the primary's chain.
func TestUpstreamReplaced(t *testing.T) {
	p := testnet.StartPrimary(t, 20*time.Millisecond, nil)
	genesis := testnet.GenesisOf(p.Node)
	a := startNetworkFollower(t, p.PublicAddr(), genesis)
	b := startNetworkFollower(t, p.PublicAddr(), genesis)
	vip := startProxy(t, a.Addr())
	f := startNetworkFollower(t, vip.Addr(), genesis)
	tip := func(s interface{ Tips() (uint64, uint64) }) uint64 { c, _ := s.Tips(); return c }
	testnet.WaitFor(t, 30*time.Second, "the follower to sync 20 blocks through the proxy", func() bool { return tip(f.Store()) >= 20 })

	// Same height: the primary pauses (restarted without producing) so a
	// and b settle on its tip, then b takes a's place behind the address,
	// and the primary produces again.
	p.Stop()
	down := tip(p.Store())
	producing, paused := p.Config, p.Config
	paused.Produce = false
	p = testnet.RunPrimary(t, paused)
	testnet.WaitFor(t, 30*time.Second, "a and b to settle on the primary's tip", func() bool {
		return tip(a.Store()) == down && tip(b.Store()) == down
	})
	vip.disable()
	vip.p.Upstream = b.Addr()
	vip.enable()
	p.Stop()
	p = testnet.RunPrimary(t, producing)
	swapped := time.Now()
	testnet.WaitFor(t, 60*time.Second, "the follower to go on through the replacement", func() bool { return tip(f.Store()) >= down+10 })
	t.Logf("replaced at the same height (%d): the follower went 10 blocks further in %s", down, time.Since(swapped).Round(time.Millisecond))
	testnet.SameChain(t, p.Store(), f.Store())

	// Behind: a fresh store, empty, takes the address. The follower is
	// ahead of it; it must neither go back nor stall for good once the
	// fresh store catches up.
	c := startNetworkFollower(t, p.PublicAddr(), genesis)
	vip.disable()
	vip.p.Upstream = c.Addr()
	vip.enable()
	before := tip(f.Store())
	testnet.WaitFor(t, 60*time.Second, "the follower to go on once the fresh store caught up", func() bool { return tip(f.Store()) >= before+10 })
	if got := tip(f.Store()); got < before {
		t.Fatalf("the follower went back from %d to %d", before, got)
	}
	testnet.SameChain(t, p.Store(), f.Store())
}
