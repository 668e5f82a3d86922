package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"storesync/actors"
	"storesync/api/storev1"
	"storesync/block"
	"storesync/runtime"
	"storesync/store"
	"storesync/workload"
)

// CatchupRow is one profile at one round-trip time.
type CatchupRow struct {
	RTTms     int64   `json:"rtt_ms"`
	Profile   string  `json:"profile"`
	Blocks    int     `json:"blocks"`
	EngineBPS float64 `json:"engine_bps"`
	// NoOverlapBPS: the engine with --no-overlap (the next group validated
	// only once the one before committed), the same blocks and link.
	NoOverlapBPS float64 `json:"no_overlap_bps"`
	NaiveBPS     float64 `json:"naive_bps"`
	LimitBPS     float64 `json:"limit_bps"`
	// GroupedLimitBPS: the same blocks from memory in groups of the
	// median size the engine committed (MedianGroup), one ApplyBlocks each.
	GroupedLimitBPS float64 `json:"grouped_limit_bps"`
	MedianGroup     int     `json:"median_group"`
	RatioToGrouped  float64 `json:"ratio_to_grouped_limit"`
	// NaiveBlocks: the naive loop runs over the first this many blocks
	// only (at 50 ms a block it would take minutes over the whole chain).
	NaiveBlocks    int     `json:"naive_blocks"`
	EngineMBps     float64 `json:"engine_mb_per_s"`
	RatioToLimit   float64 `json:"ratio_to_limit"`
	SpeedupVsNaive float64 `json:"speedup_vs_naive"`
	// ApplierBusy is the share of the engine's catch-up with a group in
	// the store (being validated or committing): near 1, the apply path
	// itself is the bound; well below, it waited for blocks.
	ApplierBusy float64 `json:"applier_busy"`
}

// CatchupResult: a fresh store syncing a preloaded primary's chain.
type CatchupResult struct {
	Rows []CatchupRow `json:"rtt_ms"`
}

var rtts = []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond}

// catchupSize is how many blocks of a profile the scenario syncs.
type catchupSize struct {
	profile string
	blocks  int
}

func catchup(quick bool, profiles []string) (*CatchupResult, error) {
	// Long enough that start-up (the engine's first round trips, the
	// window opening) is a few percent of each run.
	sizes := []catchupSize{{"small", 10000}, {"standard", 1000}, {"large", 100}}
	sizes = slices.DeleteFunc(sizes, func(s catchupSize) bool { return !slices.Contains(profiles, s.profile) })
	if quick {
		sizes = []catchupSize{{"standard", 80}}
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("no known profile in %v (small, standard, large)", profiles)
	}
	res := &CatchupResult{}
	for _, sz := range sizes {
		p, _ := workload.ProfileByName(sz.profile)
		c, err := workload.BuildChain(23, p, sz.blocks, 1000)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "bench-catchup-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		served, err := serveChain(dir, c)
		if err != nil {
			return nil, err
		}
		// The states after each block (the primary's proofs needed them)
		// are the bench's own, not any contender's: hundreds of MB of tree
		// nodes that each contender's garbage collection would scan.
		c.States = nil
		for _, rtt := range rtts {
			// The limit is measured next to each row, not once per profile:
			// the machine's speed drifts over minutes, and a ratio is only
			// as good as the two numbers being taken close together.
			var limit time.Duration
			pprof.Do(context.Background(), pprof.Labels("contender", "limit"), func(context.Context) { limit, err = applyOnly(c, 1) })
			if err != nil {
				return nil, err
			}
			l, err := newLink(served.node.PublicAddr(), rtt)
			if err != nil {
				return nil, err
			}
			var engine time.Duration
			var busy float64
			var median int
			pprof.Do(context.Background(), pprof.Labels("contender", "engine"), func(context.Context) {
				engine, busy, median, err = engineCatchup(served, l.addr(), false)
			})
			if err != nil {
				return nil, err
			}
			var serial time.Duration
			var serialMedian int
			pprof.Do(context.Background(), pprof.Labels("contender", "engine-no-overlap"), func(context.Context) {
				serial, _, serialMedian, err = engineCatchup(served, l.addr(), true)
			})
			if err != nil {
				return nil, err
			}
			var grouped time.Duration
			pprof.Do(context.Background(), pprof.Labels("contender", "grouped-limit"), func(context.Context) { grouped, err = applyOnly(c, max(median, 1)) })
			if err != nil {
				return nil, err
			}
			var naive time.Duration
			naiveN := min(sz.blocks, catchupNaiveBlocks)
			pprof.Do(context.Background(), pprof.Labels("contender", "naive"), func(context.Context) { naive, err = naiveCatchup(served, l.addr(), naiveN) })
			if err != nil {
				return nil, err
			}
			l.close()
			n := float64(sz.blocks)
			row := CatchupRow{RTTms: rtt.Milliseconds(), Profile: sz.profile, Blocks: sz.blocks,
				EngineBPS: n / engine.Seconds(), NoOverlapBPS: n / serial.Seconds(), NaiveBPS: float64(naiveN) / naive.Seconds(), NaiveBlocks: naiveN, LimitBPS: n / limit.Seconds(),
				GroupedLimitBPS: n / grouped.Seconds(), MedianGroup: median,
				EngineMBps: float64(served.bytes) / 1e6 / engine.Seconds(), ApplierBusy: busy}
			row.RatioToLimit = row.EngineBPS / row.LimitBPS
			row.RatioToGrouped = row.EngineBPS / row.GroupedLimitBPS
			row.SpeedupVsNaive = row.EngineBPS / row.NaiveBPS
			res.Rows = append(res.Rows, row)
			fmt.Fprintf(os.Stderr, "catchup %s rtt %s: engine %.1f (median group %d; no overlap %.1f, median group %d), naive %.1f, limit %.1f, grouped limit %.1f blocks/s\n", sz.profile, rtt, row.EngineBPS, median, row.NoOverlapBPS, serialMedian, row.NaiveBPS, row.LimitBPS, row.GroupedLimitBPS)
		}
		served.stop()
	}
	fmt.Println("\n### catchup: a fresh follower syncing a primary's chain (blocks/s)")
	fmt.Println()
	fmt.Println("| profile | RTT ms | blocks | engine | no overlap | median group | naive loop (blocks) | apply-only limit, per block | engine/limit | grouped limit | engine/grouped | engine/naive | engine MB/s | applier busy |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %s | %d | %d | %.1f | %.1f | %d | %.1f (%d) | %.1f | %.2f | %.1f | %.2f | %.1fx | %.1f | %.0f%% |\n", r.Profile, r.RTTms, r.Blocks, r.EngineBPS, r.NoOverlapBPS, r.MedianGroup, r.NaiveBPS, r.NaiveBlocks,
			r.LimitBPS, r.RatioToLimit, r.GroupedLimitBPS, r.RatioToGrouped, r.SpeedupVsNaive, r.EngineMBps, 100*r.ApplierBusy)
	}
	return res, nil
}

// catchupNaiveBlocks bounds the naive loop's run: one round trip a block.
const catchupNaiveBlocks = 1500

// applyOnly is a limit: the chain's blocks, already decoded in memory,
// applied to a fresh store in groups of group blocks (1: one ApplyBlock
// each). The blocks are decoded anew from their bytes before the clock
// starts: the chain's own values were checked when it was built and
// served, and a block remembers a signature that passed, so applying them
// would skip the check every block arriving at a follower pays.
func applyOnly(c *workload.Chain, group int) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "bench-limit-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(dir, c.Genesis)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	blocks := make([]*block.Block, len(c.Blocks))
	for i, b := range c.Blocks {
		if blocks[i], err = block.Decode(b.Encode()); err != nil {
			return 0, fmt.Errorf("decode block %d: %w", b.Header.Number, err)
		}
	}
	start := time.Now()
	for i := 0; i < len(blocks); i += group {
		if _, err := st.ApplyBlocks(context.Background(), blocks[i:min(i+group, len(blocks))]); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// engineCatchup times a fresh follower (default configuration, but for
// noOverlap) to the tip, and reports the share of that time its Applier
// had a group in the store and the median size of the groups it committed.
func engineCatchup(s *servedChain, upstream string, noOverlap bool) (time.Duration, float64, int, error) {
	dir, err := os.MkdirTemp("", "bench-engine-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	f, err := runtime.New(runtime.Config{DataDir: dir, Genesis: s.genesisPath(), Upstreams: []string{upstream},
		Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Log: quiet, Engine: actors.Config{NoOverlap: noOverlap}})
	if err != nil {
		return 0, 0, 0, err
	}
	target := uint64(len(s.chain.Blocks))
	start := time.Now()
	if err := f.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer f.Stop()
	for {
		changed := f.Store().Changed()
		if c, _ := f.Store().Tips(); c >= target {
			took := time.Since(start)
			st := f.Engine().Stats()
			return took, float64(st.Applying.Load()) / float64(took), st.MedianGroup(), nil
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Minute):
			return 0, 0, 0, fmt.Errorf("engine catch-up did not finish")
		}
	}
}

// naiveCatchup is the loop of the original design note: fetch block n with
// its proof, apply it, apply the proof, next; nothing ahead, nothing in
// parallel.
func naiveCatchup(s *servedChain, upstream string, blocks int) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "bench-naive-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(dir, s.chain.Genesis)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	client, closeConn, err := dial(upstream)
	if err != nil {
		return 0, err
	}
	defer closeConn()
	ctx := context.Background()
	start := time.Now()
	for n := uint64(1); n <= uint64(blocks); n++ {
		mb, err := client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: n, IncludeProof: true})
		if err != nil {
			return 0, err
		}
		if _, err := st.ApplyBlockBytes(ctx, mb.Block); err != nil {
			return 0, err
		}
		if mb.Proof != nil {
			if err := st.ApplyProof(ctx, n, mb.Proof); err != nil {
				return 0, err
			}
		}
	}
	return time.Since(start), nil
}
