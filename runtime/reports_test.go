package runtime

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"storesync/actors"
	"storesync/api/storev1"
	"storesync/internal/testnet"
	"storesync/primary"
	"storesync/replicas"
)

// reportsEvery is the health interval of the followers in the reports test:
// the poller's calls carry the report, so the table is this fresh.
const reportsEvery = 100 * time.Millisecond

// reportingFollower starts a follower on dir (whose id the caller may have
// made already) that counts the ids in trusted as its own followers, with
// the given follower timeout; stop ends it (once; also at the test's end).
func reportingFollower(t *testing.T, dir, gpath string, trusted []string, timeout time.Duration, upstreams ...string) (f *Follower, stop func()) {
	t.Helper()
	f, err := New(Config{
		DataDir: dir, Genesis: gpath, Upstreams: upstreams, Listen: "127.0.0.1:0", ShutdownGrace: time.Second,
		HealthEvery: reportsEvery,
		Engine: actors.Config{FetchWindow: 16, PollInterval: 20 * time.Millisecond, RetryInitial: 10 * time.Millisecond,
			RetryMax: 200 * time.Millisecond, FetchTimeout: 2 * time.Second},
		Reports: Reports{Followers: trusted, Timeout: timeout},
		Log:     testnet.LogOnFailure(t, "follower in "+filepath.Base(dir)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := f.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return f, stop
}

// newID makes the data directory of a store to be and its id.
func newID(t *testing.T) (dir, id string) {
	t.Helper()
	dir = t.TempDir()
	id, err := replicas.LoadID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, id
}

func rowOf(s replicas.Status, id string) (replicas.Row, bool) {
	i := slices.IndexFunc(s.Followers, func(r replicas.Row) bool { return r.ID == id })
	if i < 0 {
		return replicas.Row{}, false
	}
	return s.Followers[i], true
}

// sendReport makes one call to addr with a made-up report, as any client
// of the public read API can.
func sendReport(t *testing.T, addr string, r replicas.Report) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, replicas.MetadataKey, string(replicas.Encode(r)))
	if _, err := storev1.NewStoreClient(conn).GetBlockHeaderByNumber(ctx, &storev1.BlockHeaderByNumberRequest{}); err != nil {
		t.Fatal(err)
	}
}

// TestReportsTree: a primary with followers A and B, and C chained below A.
// The primary's table shows all three at the right depths with their
// durable tips (fresh within a few health intervals of each commit); a
// stopped follower drops out after the timeout and takes the watermark for
// three copies with it; a plain client making up followers counts for
// nothing, one claiming more than the primary has is clamped; a restarted
// primary rebuilds the table from the next reports.
func TestReportsTree(t *testing.T) {
	const timeout = time.Second
	dirA, idA := newID(t)
	dirB, idB := newID(t)
	dirC, idC := newID(t)
	trusted := []string{idA, idB, idC, "clamp-test"}
	p := testnet.StartPrimary(t, 50*time.Millisecond, func(c *primary.Config) {
		c.Followers, c.FollowerTimeout = trusted, timeout
	})
	gpath := testnet.GenesisOf(p.Node)
	a, _ := reportingFollower(t, dirA, gpath, []string{idC}, timeout, p.PublicAddr())
	b, _ := reportingFollower(t, dirB, gpath, nil, timeout, p.PublicAddr())
	c, stopC := reportingFollower(t, dirC, gpath, nil, timeout, a.Addr())

	want := map[string]struct {
		depth  int
		parent string
		f      *Follower
	}{idA: {1, p.Replicas().ID(), a}, idB: {1, p.Replicas().ID(), b}, idC: {2, idA, c}}
	waitFor(t, 30*time.Second, "the primary's table to show A, B and C, verified", func() bool {
		s := p.Replicas().Status()
		for id, w := range want {
			r, ok := rowOf(s, id)
			if !ok || r.Depth != w.depth || r.Parent != w.parent || !r.Verified || r.Addr != w.f.Addr() || r.Committed == 0 {
				return false
			}
		}
		return len(s.Followers) == 3 && s.Watermarks["3"] != nil
	})

	// Freshness: each follower's tip, sampled, shows in the primary's table
	// soon after. The bound asserted is loose (a loaded machine); the
	// figure logged is the one to read.
	var worst time.Duration
	for range 10 {
		for id, w := range want {
			tip, _ := w.f.Store().Tips()
			at := time.Now()
			waitFor(t, 10*time.Second, "the primary to hear of block "+id, func() bool {
				r, ok := rowOf(p.Replicas().Status(), id)
				return ok && r.Committed >= tip
			})
			worst = max(worst, time.Since(at))
		}
	}
	t.Logf("a follower's committed tip reached the primary's table within %s (health interval %s)", worst, reportsEvery)

	// Nothing in the table is above what the store has made durable.
	for id, w := range want {
		r, _ := rowOf(p.Replicas().Status(), id)
		if c, pr := w.f.Store().Tips(); r.Committed > c || r.Proven > pr {
			t.Fatalf("the primary holds %d/%d for %s, which has %d/%d", r.Committed, r.Proven, id, c, pr)
		}
	}

	// C stops: A forgets it after the timeout, then the primary does, and
	// with two followers left there is no watermark for three copies.
	stopC()
	waitFor(t, 10*timeout, "the primary to drop C", func() bool {
		s := p.Replicas().Status()
		_, ok := rowOf(s, idC)
		return !ok && s.Watermarks["3"] == nil && s.Watermarks["2"] != nil
	})

	// The same in the primary's metrics: watermarks for one and two
	// copies, none for three, two stores counted.
	fams := scrape(t, p.HTTPAddr())
	for k, want := range map[string]bool{"1": true, "2": true, "3": false} {
		if got := hasSeries(fams, "storesync_replicated_watermark", "copies", k); got != want {
			t.Fatalf("storesync_replicated_watermark{copies=%q} present %v, want %v", k, got, want)
		}
	}
	if n := value(fams, "storesync_followers_known", "verified", "true"); n != 2 {
		t.Fatalf("storesync_followers_known{verified=\"true\"} %v, want 2", n)
	}

	// A plain client makes up three followers at the primary's tip: they
	// show, unverified, and no watermark counts them.
	tip, proven := p.Store().Tips()
	fake := replicas.Report{ID: "liar", Addr: "127.0.0.1:1", Committed: tip, Proven: proven}
	for _, id := range []string{"made-up-1", "made-up-2", "made-up-3"} {
		fake.Below = append(fake.Below, replicas.Entry{ID: id, Parent: "liar", Addr: "127.0.0.1:2", Committed: tip, Proven: proven, Depth: 1, Verified: true})
	}
	sendReport(t, p.PublicAddr(), fake)
	s := p.Replicas().Status()
	for _, id := range []string{"liar", "made-up-1", "made-up-2", "made-up-3"} {
		if r, ok := rowOf(s, id); !ok || r.Verified {
			t.Fatalf("%s: row %+v (present %v), want it shown and unverified", id, r, ok)
		}
	}
	if s.Watermarks["3"] != nil {
		t.Fatalf("watermark for 3 copies %d, counted from an unverified report", *s.Watermarks["3"])
	}

	// A listed reporter claiming more than the primary has is clamped.
	sendReport(t, p.PublicAddr(), replicas.Report{ID: "clamp-test", Committed: 1 << 40, Proven: 1 << 40})
	if r, ok := rowOf(p.Replicas().Status(), "clamp-test"); !ok || !r.Clamped || !r.Verified || r.Committed > p.Store().Snapshot().Committed() {
		t.Fatalf("clamp-test: %+v (present %v), want it verified and clamped to the primary's tip", r, ok)
	}

	// The primary restarts on the same directory and addresses: the table
	// starts empty and the next reports fill it again.
	p.Stop()
	p2 := testnet.RunPrimary(t, p.Config)
	if n := len(p2.Replicas().Status().Followers); n > 2 {
		t.Fatalf("a restarted primary starts with %d stores in its table", n)
	}
	waitFor(t, 30*time.Second, "the restarted primary to hear of A and B again", func() bool {
		s := p2.Replicas().Status()
		ra, okA := rowOf(s, idA)
		rb, okB := rowOf(s, idB)
		return okA && okB && ra.Verified && rb.Verified && s.Watermarks["2"] != nil
	})
	if p2.Replicas().ID() != p.Replicas().ID() {
		t.Fatalf("the primary's id changed across a restart: %s, then %s", p.Replicas().ID(), p2.Replicas().ID())
	}
}

// hasSeries reports whether a family has a sample with the label value.
func hasSeries(fams map[string]*dto.MetricFamily, name, label, val string) bool {
	f := fams[name]
	if f == nil {
		return false
	}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if l.GetName() == label && l.GetValue() == val {
				return true
			}
		}
	}
	return false
}

// TestReportsFreshWhileHeld: a caught-up follower whose every block call
// is held at the primary (a block every 2 s, each probe waiting for the
// next commit there) still has each durable tip it reaches in the
// primary's table long before the next block: the held probe for block
// n+1 left before n was committed here and carries the old tips, so the
// word comes by the health poller's calls.
func TestReportsFreshWhileHeld(t *testing.T) {
	const interval = 2 * time.Second
	dir, id := newID(t)
	p := testnet.StartPrimary(t, interval, func(c *primary.Config) { c.Followers = []string{id} })
	f, _ := reportingFollower(t, dir, testnet.GenesisOf(p.Node), nil, 10*time.Second, p.PublicAddr())
	tips := func() (uint64, uint64) { return f.Store().Tips() }
	waitFor(t, 30*time.Second, "the follower to catch up and prove", func() bool {
		pc, pp := p.Store().Tips()
		c, pr := tips()
		return pc >= 2 && c == pc && pr == pp
	})
	held0 := value(scrape(t, p.HTTPAddr()), "storesync_held_calls_total", "outcome", "answered")
	var worst time.Duration
	for range 4 {
		c0, _ := tips()
		// The next block, committed and proven here.
		waitFor(t, 4*interval, "the follower to commit and prove the next block", func() bool {
			c, pr := tips()
			return c > c0 && pr == c
		})
		c, pr := tips()
		snap := f.Store().Snapshot()
		at := snap.ProvenAt
		waitFor(t, 2*interval, "the primary to hear of the follower's tips", func() bool {
			r, ok := rowOf(p.Replicas().Status(), id)
			return ok && r.Committed >= c && r.Proven >= pr
		})
		worst = max(worst, time.Since(at))
		// Heard before the primary made the next block: not carried by the
		// next block call (held until that block), which would be a whole
		// block interval late.
		if pc, _ := p.Store().Tips(); pc > c {
			t.Fatalf("the primary heard of block %d only after making block %d", c, pc)
		}
	}
	held := value(scrape(t, p.HTTPAddr()), "storesync_held_calls_total", "outcome", "answered") - held0
	t.Logf("the follower's tips, proven, reached the primary's table within %s of their commit (health interval %s, block interval %s); %v held calls answered meanwhile",
		worst.Round(time.Millisecond), reportsEvery, interval, held)
	if held == 0 {
		t.Fatal("no call was held at the primary: the test exercised polling, not held calls")
	}
}
