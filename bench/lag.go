package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"storesync/actors"
	"storesync/api/storev1"
	"storesync/primary"
	"storesync/runtime"
	"storesync/store"
)

// LagRow is the commit-to-commit latency at one round-trip time.
type LagRow struct {
	RTTms                           int64              `json:"rtt_ms"`
	Blocks                          int                `json:"blocks"`
	EngineP50, EngineP90, EngineP99 float64            `json:"-"`
	EngineMax                       float64            `json:"-"`
	NaiveP50, NaiveP90, NaiveP99    float64            `json:"-"`
	NaiveMax                        float64            `json:"-"`
	Engine                          map[string]float64 `json:"engine_ms"`
	Naive                           map[string]float64 `json:"naive_ms"`
	engineSeries, naiveSeries       []float64          // per block, for the plot
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
	n, err := primary.New(primary.Config{DataDir: dir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0", Produce: true,
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

// commits records when each block was first seen committed in a store,
// and when it was first seen proven (the proven tip reaching it).
type commits struct {
	mu     sync.Mutex
	at     map[uint64]time.Time
	proven map[uint64]time.Time
}

func watchCommits(ctx context.Context, st *store.Store) *commits {
	c := &commits{at: map[uint64]time.Time{}, proven: map[uint64]time.Time{}}
	go func() {
		var seen, seenProven uint64
		for {
			ch := st.Changed()
			tip, proven := st.Tips()
			now := time.Now()
			c.mu.Lock()
			for n := seen + 1; n <= tip; n++ {
				c.at[n] = now
			}
			for n := seenProven + 1; n <= proven; n++ {
				c.proven[n] = now
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
	st     *store.Store
	mu     sync.Mutex
	bytes  int64
	useful int64
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
				if _, err := st.ApplyBlockBytes(ctx, mb.Block); err == nil {
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

func lag(quick bool) (*LagResult, error) {
	interval, run := 500*time.Millisecond, 40*time.Second
	if quick {
		interval, run = 250*time.Millisecond, 6*time.Second
	}
	res := &LagResult{}
	for _, rtt := range []time.Duration{0, 50 * time.Millisecond} {
		p, err := startProducing(interval, time.Second, 0)
		if err != nil {
			return nil, err
		}
		l, err := newLink(p.node.PublicAddr(), rtt)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pc := watchCommits(ctx, p.node.Store())
		fdir, _ := os.MkdirTemp("", "bench-lag-engine-")
		f, err := runtime.New(runtime.Config{DataDir: fdir, Genesis: p.genesisPath(), Upstreams: []string{l.addr()},
			Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Engine: actors.Config{PollInterval: pollInterval}, Log: quiet})
		if err != nil {
			return nil, err
		}
		if err := f.Start(); err != nil {
			return nil, err
		}
		ec := watchCommits(ctx, f.Store())
		ndir, _ := os.MkdirTemp("", "bench-lag-naive-")
		nst, err := store.Open(ndir, f.Store().Genesis())
		if err != nil {
			return nil, err
		}
		nc := watchCommits(ctx, nst)
		_, stopNaive, err := runNaive(ctx, nst, l.addr(), false)
		if err != nil {
			return nil, err
		}
		time.Sleep(run) // the scenario's duration: the primary produces meanwhile
		tip, _ := p.node.Store().Tips()
		cancel()
		stopNaive()
		f.Stop()
		nst.Close()
		l.close()
		p.stop()
		os.RemoveAll(fdir)
		os.RemoveAll(ndir)
		var em, nm []float64
		for n := uint64(4); n+1 < tip; n++ { // skip the start-up catch-up and the last block
			pt, ok := pc.get(n)
			if !ok {
				continue
			}
			if t, ok := ec.get(n); ok {
				em = append(em, float64(t.Sub(pt).Microseconds())/1000)
			}
			if t, ok := nc.get(n); ok {
				nm = append(nm, float64(t.Sub(pt).Microseconds())/1000)
			}
		}
		row := LagRow{RTTms: rtt.Milliseconds(), Blocks: len(em),
			Engine:       map[string]float64{"p50": percentile(em, .5), "p90": percentile(em, .9), "p99": percentile(em, .99), "max": percentile(em, 1)},
			Naive:        map[string]float64{"p50": percentile(nm, .5), "p90": percentile(nm, .9), "p99": percentile(nm, .99), "max": percentile(nm, 1)},
			engineSeries: em, naiveSeries: nm}
		res.Rows = append(res.Rows, row)
		res.EngineP50ms, res.EngineP99ms, res.NaiveP50ms, res.NaiveP99ms = row.Engine["p50"], row.Engine["p99"], row.Naive["p50"], row.Naive["p99"]
	}
	fmt.Printf("\n### lag: primary commit to follower commit (ms), a standard block every %s, poll interval %s\n\n", interval, pollInterval)
	fmt.Println("| RTT ms | blocks | engine p50 | p90 | p99 | max | naive p50 | p90 | p99 | max |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", r.RTTms, r.Blocks,
			r.Engine["p50"], r.Engine["p90"], r.Engine["p99"], r.Engine["max"], r.Naive["p50"], r.Naive["p90"], r.Naive["p99"], r.Naive["max"])
	}
	return res, nil
}
