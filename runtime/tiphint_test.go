package runtime

import (
	"sync"
	"testing"
	"time"

	"storesync/actors"
	"storesync/messages"
)

// TestPollerTipsReachTheFetcher: the tips the health poller counts reach the
// Fetcher as hints, named as the engine names the upstream, and only an
// upstream's: a peer's tip counts toward the chain tip but is not fetched
// from.
func TestPollerTipsReachTheFetcher(t *testing.T) {
	p := startPrimary(t, 20*time.Millisecond)
	peer := newFollowerCfg(t, genesisOf(p), quiet(), nil, p.PublicAddr())
	startFollower(t, peer)
	var mu sync.Mutex
	hints := map[string]uint64{}
	hooks := &actors.Hooks{Receive: func(a string, msg any) {
		if m, ok := msg.(*messages.TipHint); ok && a == actors.FetcherName {
			mu.Lock()
			hints[m.Upstream] = max(hints[m.Upstream], m.Tip)
			mu.Unlock()
		}
	}}
	f := newFollowerCfg(t, genesisOf(p), quiet(), func(c *Config) {
		c.Peers, c.HealthEvery, c.Engine.Hooks = []string{peer.Addr()}, 20*time.Millisecond, hooks
	}, p.PublicAddr())
	polled := map[string]bool{} // the sources whose tips the poller counted
	tipSeen := f.poller.OnTip
	f.poller.OnTip = func(name string, tip uint64) {
		mu.Lock()
		polled[name] = true
		mu.Unlock()
		tipSeen(name, tip)
	}
	startFollower(t, f)
	waitFor(t, 30*time.Second, "a hint of the upstream's tip past block 10", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return hints[p.PublicAddr()] >= 10
	})
	waitFor(t, 30*time.Second, "the poller to count the peer's tip", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return polled[peer.Addr()]
	})
	time.Sleep(100 * time.Millisecond) // a hint sent would have arrived
	mu.Lock()
	defer mu.Unlock()
	for name := range hints {
		if name != p.PublicAddr() {
			t.Fatalf("the Fetcher was hinted the tip of %s, not an upstream (hints %v)", name, hints)
		}
	}
}
