package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"storesync/actors"
	"storesync/api/storev1"
	"storesync/primary"
	"storesync/runtime"
	"storesync/store"
)

// LagRow is the commit-to-commit latency at one round-trip time: the
// engine with an upstream that holds calls (the default), the same at a
// poll interval ten times as long, the engine polling (--no-hold), the
// naive loop; the apply's own p99 in the same run; and down a chain of
// three followers that hold, what each link adds.
type LagRow struct {
	RTTms                                    int64              `json:"rtt_ms"`
	Blocks                                   int                `json:"blocks"`
	ApplyP99                                 float64            `json:"apply_p99_ms"`
	Engine                                   map[string]float64 `json:"engine_ms"`        // held, poll 200 ms
	EngineSlow                               map[string]float64 `json:"engine_poll2s_ms"` // held, poll 2 s
	Polling                                  map[string]float64 `json:"polling_ms"`       // --no-hold
	GroupsOff                                map[string]float64 `json:"groups_off_ms"`    // held, --group-blocks 1
	Naive                                    map[string]float64 `json:"naive_ms"`
	ChainAdd                                 []float64          `json:"chain_link_added_p99_ms"`      // each link's p99 over the one above
	ChainApply                               []float64          `json:"chain_link_apply_p99_ms"`      // each link's own ApplyBlock, p99
	ChainOver                                []float64          `json:"chain_link_over_apply_p99_ms"` // each link's time over the one above, less its own apply of the same block, p99
	ChainBlocks                              int                `json:"chain_blocks"`
	Alone                                    []float64          `json:"one_link_alone_p99_ms"` // one follower of the primary, no other store on the machine: link, own apply, beyond it (p99)
	CallsPerBlk                              map[string]float64 `json:"calls_per_block"`       // GetBlockByNumber calls per block, health polls apart
	engineSeries, pollingSeries, naiveSeries []float64          // per block, for the plot
}

// LagResult: steady state, the primary producing. The top-level keys are
// those of the highest round-trip time.
type LagResult struct {
	Rows        []LagRow `json:"rtts"`
	EngineP50ms float64  `json:"engine_p50_ms"`
	EngineP99ms float64  `json:"engine_p99_ms"`
	NaiveP50ms  float64  `json:"naive_p50_ms"`
	NaiveP99ms  float64  `json:"naive_p99_ms"`
}

// pollInterval is the same for the engine and the naive loop.
const pollInterval = 200 * time.Millisecond

// producing runs a primary producing standard blocks for the duration.
type producing struct {
	node   *primary.Node
	dir    string
	cancel context.CancelFunc
	done   chan error
}

// startProducing runs a primary producing a standard block every interval,
// proving each proveDelay ± jitter after its timestamp.
func startProducing(interval, proveDelay, jitter time.Duration) (*producing, error) {
	dir, err := os.MkdirTemp("", "bench-primary-")
	if err != nil {
		return nil, err
	}
	if _, err := primary.Init(dir, "bench", 5); err != nil {
		return nil, err
	}
	n, err := primary.New(primary.Config{DataDir: dir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Produce: true,
		BlockInterval: interval, Profile: "standard", Seed: 5, ProveDelay: proveDelay, ProveJitter: jitter, ShutdownGrace: time.Second, Log: quiet})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &producing{node: n, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- n.Run(ctx) }()
	return p, nil
}

func (p *producing) stop() { p.cancel(); <-p.done; os.RemoveAll(p.dir) }

func (p *producing) genesisPath() string { return filepath.Join(p.dir, primary.GenesisFile) }

// commits records when each block was committed in a store, and when it
// was proven there (the proven tip reaching it): the instants the store
// published them (Snapshot.CommittedAt, ProvenAt), not when this watcher
// woke, which on a loaded machine can be a scheduler slice later. Blocks
// committed between two wakes get the later one's time.
type commits struct {
	mu     sync.Mutex
	at     map[uint64]time.Time
	proven map[uint64]time.Time
	apply  map[uint64]time.Duration // the block's ApplyBlock here (Snapshot.ApplyStart to CommittedAt), for tips seen one by one
}

func watchCommits(ctx context.Context, st *store.Store) *commits {
	c := &commits{at: map[uint64]time.Time{}, proven: map[uint64]time.Time{}, apply: map[uint64]time.Duration{}}
	go func() {
		var seen, seenProven uint64
		for {
			ch := st.Changed()
			sn := st.Snapshot()
			tip, proven := sn.Committed(), sn.Proven
			c.mu.Lock()
			for n := seen + 1; n <= tip; n++ {
				c.at[n] = sn.CommittedAt
			}
			if tip > seen && !sn.ApplyStart.IsZero() {
				c.apply[tip] = sn.CommittedAt.Sub(sn.ApplyStart)
			}
			for n := seenProven + 1; n <= proven; n++ {
				c.proven[n] = sn.ProvenAt
			}
			c.mu.Unlock()
			seen, seenProven = max(seen, tip), max(seenProven, proven)
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()
	return c
}

func (c *commits) get(n uint64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[n]
	return t, ok
}

// applied is how long block n's ApplyBlock took here, if known.
func (c *commits) applied(n uint64) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.apply[n]
	return d, ok
}

// provenAt is when block n was first seen proven.
func (c *commits) provenAt(n uint64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.proven[n]
	return t, ok
}

// naiveFollower is the design note's loop: poll tip+1 (with its proof);
// apply what comes; when nothing, wait a poll interval. With pollProofs it
// also asks for proven+1 every round, as the note describes. bytes counts
// every block and proof byte received, useful those of the blocks and
// proofs it applied (the engine's Stats.FetchedBytes and UsefulBytes).
type naiveFollower struct {
	st      *store.Store
	mu      sync.Mutex
	bytes   int64
	useful  int64
	applyMs []float64 // each ApplyBlock's time
}

func (nf *naiveFollower) count(fetched, useful int) {
	nf.mu.Lock()
	defer nf.mu.Unlock()
	nf.bytes += int64(fetched)
	nf.useful += int64(useful)
}

// totals are the bytes received and the useful ones.
func (nf *naiveFollower) totals() (fetched, useful int64) {
	nf.mu.Lock()
	defer nf.mu.Unlock()
	return nf.bytes, nf.useful
}

func runNaive(ctx context.Context, st *store.Store, upstream string, pollProofs bool) (*naiveFollower, func(), error) {
	client, closeConn, err := dial(upstream)
	if err != nil {
		return nil, nil, err
	}
	nf := &naiveFollower{st: st}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			committed, proven := st.Tips()
			mb, err := client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: committed + 1, IncludeProof: true})
			got := err == nil && mb.Block != nil
			if got {
				useful := 0
				began := time.Now()
				_, err := st.ApplyBlockBytes(ctx, mb.Block)
				took := float64(time.Since(began).Microseconds()) / 1000
				nf.mu.Lock()
				nf.applyMs = append(nf.applyMs, took)
				nf.mu.Unlock()
				if err == nil {
					useful = len(mb.Block)
					if mb.Proof != nil && proven == committed && st.ApplyProof(ctx, committed+1, mb.Proof) == nil {
						useful += len(mb.Proof)
					}
				}
				nf.count(len(mb.Block)+len(mb.Proof), useful)
			} else if err == nil {
				nf.count(len(mb.Proof), 0)
			}
			if pollProofs {
				if c, p := st.Tips(); p < c {
					pr, err := client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: p + 1, IncludeProof: true})
					if err == nil {
						useful := 0
						if pr.Proof != nil && st.ApplyProof(ctx, p+1, pr.Proof) == nil {
							useful = len(pr.Proof)
						}
						nf.count(len(pr.Block)+len(pr.Proof), useful)
					}
				}
			}
			if !got {
				select {
				case <-ctx.Done():
				case <-time.After(pollInterval):
				}
			}
		}
	}()
	return nf, func() { <-done; closeConn() }, nil
}

func percentile(ms []float64, p float64) float64 {
	if len(ms) == 0 {
		return 0
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// lagFollower is one engine follower of the lag scenario.
type lagFollower struct {
	f    *runtime.Follower
	stop func()
	c    *commits
}

func startLagFollower(ctx context.Context, genesisPath, upstream string, e actors.Config) (*lagFollower, error) {
	f, stop, err := startFollower("bench-lag-", genesisPath, upstream, e)
	if err != nil {
		return nil, err
	}
	return &lagFollower{f: f, stop: stop, c: watchCommits(ctx, f.Store())}, nil
}

// startFollower starts a follower of upstream on a fresh temporary
// directory; stop stops it and removes the directory.
func startFollower(prefix, genesisPath, upstream string, e actors.Config) (f *runtime.Follower, stop func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, nil, err
	}
	f, err = runtime.New(runtime.Config{DataDir: dir, Genesis: genesisPath, Upstreams: []string{upstream},
		Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Engine: e, Log: quiet})
	if err == nil {
		err = f.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return f, func() { _ = f.Stop(); os.RemoveAll(dir) }, nil
}

// fetchCalls is how many GetBlockByNumber calls the follower's engine made.
func (l *lagFollower) fetchCalls() int64 { return l.f.Engine().Stats().Calls.Load() }

func lag(quick bool) (*LagResult, error) {
	interval, run := 500*time.Millisecond, 40*time.Second
	if quick {
		interval, run = 250*time.Millisecond, 6*time.Second
	}
	res := &LagResult{}
	for _, rtt := range []time.Duration{0, 50 * time.Millisecond} {
		row := LagRow{RTTms: rtt.Milliseconds(), CallsPerBlk: map[string]float64{}}
		// Three runs, so that no more stores share the machine's two cores
		// than a comparison needs: the held engine, the polling engine and
		// the naive loop side by side; then the chain, with the held
		// engine at a long poll interval beside it; then one link alone,
		// as a deployment has it (each store on cores of its own).
		for phase := range 3 {
			d := run
			if phase > 0 && !quick {
				d = 3 * run // the chain's p99 over some 240 blocks, not its maximum
			}
			if err := lagRun(&row, phase, interval, d, rtt); err != nil {
				return nil, err
			}
		}
		res.Rows = append(res.Rows, row)
		res.EngineP50ms, res.EngineP99ms, res.NaiveP50ms, res.NaiveP99ms = row.Engine["p50"], row.Engine["p99"], row.Naive["p50"], row.Naive["p99"]
	}
	fmt.Printf("\n### lag: primary commit to follower commit (ms), a standard block every %s, poll interval %s (or 2 s)\n\n", interval, pollInterval)
	fmt.Println("engine: the upstream holds its probe until the block commits; polling: the same engine with --no-hold; target for the engine: p99 at most the apply's p99 (the naive loop's ApplyBlock, same run) + 2 RTT + 10 ms. chain: what each link of primary -> A -> B -> C adds (p99; target: one apply + one RTT), in a second, longer run with the held engine at a 2 s poll interval beside it; with each link's own apply (p99) and, block by block, what the link took beyond its own apply of the block (p99); one link alone: a third run, one follower of the primary and no other store on the machine. calls: GetBlockByNumber per block, health polls apart.")
	fmt.Println()
	fmt.Println("| RTT ms | blocks | apply p99 | engine p50 | p99 | max | target | polling p50 | p99 | naive p50 | p99 | engine poll 2s p50 | p99 | chain blocks | chain: A, B over A, C over B (p99) | their own apply p99 | beyond their own apply p99 | one link alone: link / own apply / beyond (p99) | calls/block: engine / polling / poll 2s |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Rows {
		target := r.ApplyP99 + 2*float64(r.RTTms) + 10
		join := func(xs []float64, sep string) string {
			out := make([]string, len(xs))
			for i, x := range xs {
				out[i] = fmt.Sprintf("%.0f", x)
			}
			return strings.Join(out, sep)
		}
		fmt.Printf("| %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %s | %s | %s | %s | %.2f / %.2f / %.2f |\n", r.RTTms, r.Blocks, r.ApplyP99,
			r.Engine["p50"], r.Engine["p99"], r.Engine["max"], target, r.Polling["p50"], r.Polling["p99"],
			r.Naive["p50"], r.Naive["p99"], r.EngineSlow["p50"], r.EngineSlow["p99"], r.ChainBlocks, join(r.ChainAdd, ", "), join(r.ChainApply, ", "), join(r.ChainOver, ", "), join(r.Alone, " / "),
			r.CallsPerBlk["engine"], r.CallsPerBlk["polling"], r.CallsPerBlk["engine, poll 2s"])
	}
	fmt.Println("\nGroup commit caught up: the engine as above beside the same engine with --group-blocks 1 (every block alone), same run (ms):")
	fmt.Println()
	fmt.Println("| RTT ms | engine p50 | p99 | max | groups off p50 | p99 | max |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", r.RTTms, r.Engine["p50"], r.Engine["p99"], r.Engine["max"], r.GroupsOff["p50"], r.GroupsOff["p99"], r.GroupsOff["max"])
	}
	return res, nil
}

// lagRun runs one phase of the lag scenario at one round-trip time and
// fills its part of row.
func lagRun(row *LagRow, phase int, interval, run, rtt time.Duration) error {
	p, err := startProducing(interval, time.Second, 0)
	if err != nil {
		return err
	}
	defer p.stop()
	var links []*link
	defer func() {
		for _, l := range links {
			l.close()
		}
	}()
	newL := func(target string) (string, error) {
		l, err := newLink(target, rtt)
		if err != nil {
			return "", err
		}
		links = append(links, l)
		return l.addr(), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pc := watchCommits(ctx, p.node.Store())
	var fs []*lagFollower
	defer func() {
		for _, f := range fs {
			f.stop()
		}
	}()
	start := func(upstream string, e actors.Config) (*lagFollower, error) {
		addr, err := newL(upstream)
		if err != nil {
			return nil, err
		}
		f, err := startLagFollower(ctx, p.genesisPath(), addr, e)
		if err == nil {
			fs = append(fs, f)
		}
		return f, err
	}
	counted := map[string]*lagFollower{}
	var chain []*lagFollower
	var nf *naiveFollower
	var nc *commits
	stopNaive := func() {}
	if phase == 0 {
		held, err := start(p.node.PublicAddr(), actors.Config{PollInterval: pollInterval})
		if err != nil {
			return err
		}
		polling, err := start(p.node.PublicAddr(), actors.Config{PollInterval: pollInterval, NoHold: true})
		if err != nil {
			return err
		}
		// Groups form only while blocks wait: caught up, turning them off
		// must change nothing (measured beside the default, same run).
		single, err := start(p.node.PublicAddr(), actors.Config{PollInterval: pollInterval, GroupBlocks: 1})
		if err != nil {
			return err
		}
		counted["engine"], counted["polling"], counted["engine, groups off"] = held, polling, single
		ndir, _ := os.MkdirTemp("", "bench-lag-naive-")
		defer os.RemoveAll(ndir)
		nst, err := store.Open(ndir, held.f.Store().Genesis())
		if err != nil {
			return err
		}
		defer nst.Close()
		nc = watchCommits(ctx, nst)
		naddr, err := newL(p.node.PublicAddr())
		if err != nil {
			return err
		}
		if nf, stopNaive, err = runNaive(ctx, nst, naddr, false); err != nil {
			return err
		}
	} else if phase == 2 {
		f, err := start(p.node.PublicAddr(), actors.Config{PollInterval: pollInterval})
		if err != nil {
			return err
		}
		chain = append(chain, f)
	} else {
		slow, err := start(p.node.PublicAddr(), actors.Config{PollInterval: 10 * pollInterval})
		if err != nil {
			return err
		}
		counted["engine, poll 2s"] = slow
		for range 3 {
			up := p.node.PublicAddr()
			if len(chain) > 0 {
				up = chain[len(chain)-1].f.Addr()
			}
			f, err := start(up, actors.Config{PollInterval: pollInterval})
			if err != nil {
				return err
			}
			chain = append(chain, f)
		}
	}
	// Calls per block over the second half, caught up.
	time.Sleep(run / 2)
	tip0, _ := p.node.Store().Tips()
	calls0 := map[string]int64{}
	for name, f := range counted {
		calls0[name] = f.fetchCalls()
	}
	time.Sleep(run / 2) // the scenario's duration: the primary produces meanwhile
	tip, _ := p.node.Store().Tips()
	for name, f := range counted {
		row.CallsPerBlk[name] = float64(f.fetchCalls()-calls0[name]) / float64(max(tip-tip0, 1))
	}
	cancel()
	stopNaive()
	series := func(c, base *commits) []float64 {
		var out []float64
		for n := uint64(4); n+1 < tip; n++ { // skip the start-up catch-up and the last block
			bt, ok := base.get(n)
			if !ok {
				continue
			}
			if t, ok := c.get(n); ok {
				out = append(out, float64(t.Sub(bt).Microseconds())/1000)
			}
		}
		return out
	}
	stats := func(xs []float64) map[string]float64 {
		return map[string]float64{"p50": percentile(xs, .5), "p90": percentile(xs, .9), "p99": percentile(xs, .99), "max": percentile(xs, 1)}
	}
	if phase == 0 {
		em, pm, nm := series(counted["engine"].c, pc), series(counted["polling"].c, pc), series(nc, pc)
		row.Blocks, row.ApplyP99 = len(em), percentile(nf.applyMs, .99)
		row.Engine, row.Polling, row.Naive = stats(em), stats(pm), stats(nm)
		row.GroupsOff = stats(series(counted["engine, groups off"].c, pc))
		row.engineSeries, row.pollingSeries, row.naiveSeries = em, pm, nm
		return nil
	}
	if phase == 1 {
		row.EngineSlow = stats(series(counted["engine, poll 2s"].c, pc))
	}
	base := pc
	for _, f := range chain {
		// Block by block: the link's time over the store above, and of
		// that, what it took beyond applying the block itself (the wake,
		// the round trip, the fetch and the checks, and any wait for a core
		// the other stores were using).
		var added, own, over []float64
		for n := uint64(4); n+1 < tip; n++ {
			bt, ok1 := base.get(n)
			t, ok2 := f.c.get(n)
			if !ok1 || !ok2 {
				continue
			}
			added = append(added, float64(t.Sub(bt).Microseconds())/1000)
			if a, ok := f.c.applied(n); ok {
				own = append(own, float64(a.Microseconds())/1000)
				over = append(over, float64((t.Sub(bt)-a).Microseconds())/1000)
			}
		}
		if phase == 2 {
			row.Alone = []float64{percentile(added, .99), percentile(own, .99), percentile(over, .99)}
			break
		}
		row.ChainAdd = append(row.ChainAdd, percentile(added, .99))
		row.ChainBlocks = len(added)
		row.ChainApply = append(row.ChainApply, percentile(own, .99))
		row.ChainOver = append(row.ChainOver, percentile(over, .99))
		base = f.c
	}
	return nil
}
