package reliability

import (
	"cmp"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"storesync/actors"
	"storesync/internal/testnet"
	"storesync/primary"
	"storesync/runtime"
)

// networkFault is one kind of trouble on the link between a follower and
// its upstream.
type networkFault struct {
	name string
	// short is how long the fault is held in the short form (0: 2 s); the
	// long form holds every fault 30 s.
	short time.Duration
	// progress: the link still carries data, so the follower must keep
	// committing blocks while the fault lasts.
	progress bool
	// alone: run with a follower of its own, beside the others, because
	// most of its time is spent waiting.
	alone bool
	apply func(*proxy)
	lift  func(*proxy)
}

var networkFaults = []networkFault{
	{
		name: "latency 250±250 ms each way", progress: true,
		apply: func(x *proxy) { x.both("latency", "latency", map[string]any{"latency": 250, "jitter": 250}) },
		lift:  func(x *proxy) { x.removeBoth("latency") },
	},
	{
		name: "bandwidth 64 KB/s each way", progress: true,
		apply: func(x *proxy) { x.both("bandwidth", "bandwidth", map[string]any{"rate": 64}) },
		lift:  func(x *proxy) { x.removeBoth("bandwidth") },
	},
	{
		// toxiproxy's reset_peer swallows a connection's first bytes and
		// resets it 300 ms later: no connection carries anything.
		name:  "reset_peer 300 ms (every connection reset)",
		apply: func(x *proxy) { x.add("reset", "reset_peer", "downstream", map[string]any{"timeout": 300}) },
		lift:  func(x *proxy) { x.remove("reset") },
	},
	{
		// Each connection is cut after 256 KB back, mid-response: many
		// drops, each failing every call in flight on it at once.
		name: "connections cut every 256 KB", progress: true,
		apply: func(x *proxy) { x.add("cut", "limit_data", "downstream", map[string]any{"bytes": 256 << 10}) },
		lift:  func(x *proxy) { x.remove("cut") },
	},
	{
		name:  "proxy down (connection refused)",
		apply: func(x *proxy) { x.disable() },
		lift:  func(x *proxy) { x.enable() },
	},
	{
		// timeout 0 drops everything and never closes: a black hole, new
		// connections included. toxiproxy closes the connections it held
		// when it is lifted; "established connection silent" is the hole
		// nothing ever closes.
		name: "black hole (timeout 0) both ways", short: 3 * time.Second,
		apply: func(x *proxy) { x.both("blackhole", "timeout", map[string]any{"timeout": 0}) },
		lift:  func(x *proxy) { x.removeBoth("blackhole") },
	},
	{
		// The connection in use goes dead without a reset while a new one
		// would work: only the follower can notice, and must redial.
		name: "established connection silent", progress: true, alone: true,
		apply: func(x *proxy) { x.silence() },
		lift:  func(x *proxy) { x.removeBoth("silent") },
	},
	{
		// Every response in small TCP segments, so each HTTP/2 frame is
		// read in pieces.
		name: "slicer 256±128 B, 50 µs apart", progress: true,
		apply: func(x *proxy) {
			x.both("slicer", "slicer", map[string]any{"average_size": 256, "size_variation": 128, "delay": 50})
		},
		lift: func(x *proxy) { x.removeBoth("slicer") },
	},
}

// TestNetworkFaults puts each fault on the only link between a follower
// and a producing primary, holds it, lifts it, and checks that the follower
// never wedges: it keeps committing while the link still carries data, and
// once the fault is lifted it reaches the tip the primary had at that
// moment, holding the primary's very chain. Times are measured and logged
// as table rows, never asserted beyond a bound that only a wedged follower
// misses. One follower lives through the faults in turn, as a real one
// would; a fault marked alone gets its own, at the same time.
func TestNetworkFaults(t *testing.T) {
	t.Logf("| fault | held | committed while held | behind at lift | first block after lift | caught up |")
	t.Logf("|---|---|---|---|---|---|")
	hold := func(f networkFault) time.Duration { return scaled(cmp.Or(f.short, 2*time.Second), 30*time.Second) }
	for _, fault := range networkFaults {
		if fault.alone {
			t.Run(fault.name, func(t *testing.T) {
				t.Parallel()
				r := startFaultRig(t)
				r.run(t, fault, hold(fault))
				r.goesOn(t)
			})
		}
	}
	t.Run("in turn", func(t *testing.T) {
		t.Parallel()
		r := startFaultRig(t)
		for _, fault := range networkFaults {
			if !fault.alone && !t.Run(fault.name, func(t *testing.T) { r.run(t, fault, hold(fault)) }) {
				return // the follower's state after a failed fault would blur the next
			}
		}
		r.goesOn(t)
	})
}

// wedged: a follower that has not caught up this long after a fault is
// lifted is stuck, not slow (catching up a 30 s backlog of small blocks
// takes seconds even under -race on a loaded machine).
const wedged = 60 * time.Second

// faultRig is a primary, a proxy to it, and a follower of the proxy.
type faultRig struct {
	primary  *testnet.Primary
	proxy    *proxy
	follower *runtime.Follower
}

func startFaultRig(t *testing.T) *faultRig {
	p := testnet.StartPrimary(t, 50*time.Millisecond, nil)
	x := startProxy(t, p.PublicAddr())
	return &faultRig{primary: p, proxy: x, follower: startNetworkFollower(t, x.Addr(), testnet.GenesisOf(p.Node))}
}

// goesOn checks that the follower still follows at the end: the catching
// up was not a last burst before it stopped.
func (r *faultRig) goesOn(t *testing.T) {
	next := r.primaryTip() + 5
	testnet.WaitFor(t, wedged, fmt.Sprintf("the follower to go on to block %d", next),
		func() bool { return r.committed() >= next })
}

func (r *faultRig) committed() uint64  { c, _ := r.follower.Store().Tips(); return c }
func (r *faultRig) primaryTip() uint64 { c, _ := r.primary.Store().Tips(); return c }

func (r *faultRig) run(t *testing.T, fault networkFault, hold time.Duration) {
	// Healthy first: the follower is at the tip before anything goes wrong.
	tip := r.primaryTip() + 1
	testnet.WaitFor(t, wedged, fmt.Sprintf("the follower to reach block %d through the proxy", tip),
		func() bool { return r.committed() >= tip })

	fault.apply(r.proxy)
	start, before, produced := time.Now(), r.committed(), r.primaryTip()
	// Held at least hold and, if the link still carries data, until the
	// follower has committed a block the primary made after the fault
	// began: one that can only have come through the faulty link.
	testnet.WaitFor(t, hold+wedged, fmt.Sprintf("the follower to commit block %d while %s", produced+1, fault.name), func() bool {
		return time.Since(start) >= hold && (!fault.progress || r.committed() > produced)
	})
	target, at := r.primaryTip(), r.committed()
	fault.lift(r.proxy)
	lifted := time.Now()

	// Resumed (a block past the one it had) and caught up (the primary's
	// tip when the fault was lifted) are timed apart: the first is the
	// engine noticing the link is back, the second adds the apply rate.
	var resumed time.Duration
	testnet.WaitFor(t, wedged, fmt.Sprintf("the follower to reach block %d after %s was lifted", target, fault.name), func() bool {
		c := r.committed()
		if resumed == 0 && c > at {
			resumed = time.Since(lifted)
		}
		return c >= target && c > at
	})
	caughtUp := time.Since(lifted)
	t.Logf("| %s | %.1fs | %d | %d | %.2fs | %.2fs |", fault.name, lifted.Sub(start).Seconds(), at-before,
		target-min(at, target), resumed.Seconds(), caughtUp.Seconds())
	testnet.SameChain(t, r.primary.Store(), r.follower.Store())
}

// TestResumeWhenLinkIsBack: a follower whose upstream's connection comes
// back asks it again at once, not when the backoffs the outage built up
// end. The backoffs here are a minute long at the first failure, so a
// follower that waited them out would miss the deadline by far; one that
// notices the reconnection resumes within gRPC's reconnect backoff (well
// under a second after an outage this short).
func TestResumeWhenLinkIsBack(t *testing.T) {
	const backoff = 2 * wedged
	p := testnet.StartPrimary(t, 50*time.Millisecond, nil)
	x := startProxy(t, p.PublicAddr())
	var reconnects atomic.Int64
	cfg := actors.Config{RetryInitial: backoff, RetryMax: backoff, Hooks: &actors.Hooks{Receive: func(name string, msg any) {
		if name == actors.FetcherName && fmt.Sprintf("%T", msg) == "actors.reconnected" {
			reconnects.Add(1)
		}
	}}}
	f := startFollowerWith(t, x.Addr(), testnet.GenesisOf(p.Node), cfg)
	committed := func() uint64 { c, _ := f.Store().Tips(); return c }
	for round := range scaled(2, 5) {
		tip, _ := p.Store().Tips()
		testnet.WaitFor(t, wedged, fmt.Sprintf("the follower to reach block %d", tip), func() bool { return committed() >= tip })
		failed := f.Engine().Stats().FetchErrors.Load()
		x.disable()
		// Down until a call has failed on it: the upstream and the block
		// are now backed off for a minute.
		testnet.WaitFor(t, wedged, "a call to fail on the link that is down", func() bool {
			return f.Engine().Stats().FetchErrors.Load() > failed
		})
		// Every block past the primary's tip now can only come through the
		// link once it is back.
		at, r0 := p.Store().Snapshot().Committed(), reconnects.Load()
		x.enable()
		lifted := time.Now()
		testnet.WaitFor(t, backoff/2, fmt.Sprintf("the follower to fetch block %d on the link that is back, before its backoff ends", at+1),
			func() bool { return committed() > at })
		t.Logf("round %d: resumed %s after the link was back (backoff %s); %d reconnections seen",
			round+1, time.Since(lifted).Round(time.Millisecond), backoff, reconnects.Load()-r0)
	}
	testnet.SameChain(t, p.Store(), f.Store())
}

// TestSlowLinkLargeBlocks: a link too slow to carry a whole fetch window
// of large blocks within the fetch timeout. Calls in flight share the link,
// so with the window full every one of them times out, all are retried, and
// they time out again: the follower would never commit a block. The
// Fetcher must cut what it has in flight after timeouts until blocks arrive
// in time, and grow it back. The engine's default window (64 blocks) with a
// 3 s timeout; `standard` blocks of about 120 KB over 1 MB/s: the window
// needs some 8 s, one block an eighth of a second. (toxiproxy buffers all
// the server sends, so the bytes of the calls that timed out still drain
// through the link after them, some 8 s of it, as a real link would not.)
func TestSlowLinkLargeBlocks(t *testing.T) {
	const timeout = 3 * time.Second
	p := testnet.StartPrimary(t, 100*time.Millisecond, func(c *primary.Config) { c.Profile = "standard" })
	backlog := uint64(80)
	testnet.WaitFor(t, wedged, "the primary to make a backlog", func() bool { c, _ := p.Store().Tips(); return c >= backlog })
	x := startProxy(t, p.PublicAddr())
	x.add("slow", "bandwidth", "downstream", map[string]any{"rate": 1024})
	f := startFollowerWith(t, x.Addr(), testnet.GenesisOf(p.Node), actors.Config{FetchTimeout: timeout})
	start := time.Now()
	want := scaled(backlog/2, 2*backlog)
	testnet.WaitFor(t, 2*wedged, fmt.Sprintf("the follower to commit %d blocks over the slow link", want), func() bool {
		c, _ := f.Store().Tips()
		return c >= want
	})
	took := time.Since(start)
	s := f.Engine().Stats()
	t.Logf("%d blocks (%.1f MB) over 1 MB/s in %s; %d calls failed or timed out; %d calls allowed in flight now",
		want, float64(s.FetchedBytes.Load())/1e6, took.Round(time.Millisecond), s.FetchErrors.Load(), s.FetchLimit.Load())
	testnet.SameChain(t, p.Store(), f.Store())
}

// startNetworkFollower runs a follower of upstream with the engine's
// defaults (those of the follower binary): timeouts and backoffs are what
// the test measures.
func startNetworkFollower(t *testing.T, upstream, genesisPath string) *runtime.Follower {
	return startFollowerWith(t, upstream, genesisPath, actors.Config{})
}

// startFollowerWith runs a follower of upstream with the engine config cfg.
func startFollowerWith(t *testing.T, upstream, genesisPath string, cfg actors.Config) *runtime.Follower {
	t.Helper()
	return startFollowerIn(t, t.TempDir(), upstream, genesisPath, cfg)
}

// startFollowerIn runs a follower of upstream on the data directory dir.
func startFollowerIn(t *testing.T, dir, upstream, genesisPath string, cfg actors.Config) *runtime.Follower {
	t.Helper()
	return startFollowerOf(t, dir, []string{upstream}, genesisPath, cfg)
}

// startFollowerOf runs a follower of several upstreams on dir.
func startFollowerOf(t *testing.T, dir string, upstreams []string, genesisPath string, cfg actors.Config) *runtime.Follower {
	t.Helper()
	f, err := runtime.New(runtime.Config{
		DataDir: dir, Genesis: genesisPath, Upstreams: upstreams, Listen: "127.0.0.1:0",
		ShutdownGrace: time.Second, Engine: cfg,
		Log: testnet.LogOnFailure(t, "follower in "+filepath.Base(dir)+" of "+strings.Join(upstreams, ", ")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Error(err)
		}
	})
	return f
}
