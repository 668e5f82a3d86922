package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"storesync/actors"
	"storesync/runtime"
	"storesync/store"
)

// ProofRow is one run at one proof delay. Bytes are block and proof bytes:
// fetched counts every byte received by every call (misses and hedged
// duplicates included), useful the first copy of each block applied and
// each proof applied. UniqueBytes is what a follower holding blocks
// 1..Blocks and the proofs the primary had of them at the end must have
// received at the least.
type ProofRow struct {
	ProveDelayMs  int64   `json:"prove_delay_ms"`
	ProveJitterMs int64   `json:"prove_jitter_ms"` // ± around the delay
	IntervalMs    int64   `json:"block_interval_ms"`
	RunS          float64 `json:"run_s"`
	Blocks        int     `json:"blocks"` // committed by both
	UniqueBytes   int64   `json:"unique_bytes"`
	EngineBytes   int64   `json:"engine_bytes"`        // Stats.FetchedBytes
	EngineUseful  int64   `json:"engine_useful_bytes"` // Stats.UsefulBytes
	NaiveBytes    int64   `json:"naive_bytes"`
	NaiveUseful   int64   `json:"naive_useful_bytes"`
	// Fetched per useful byte (1: nothing wasted).
	EnginePerUseful float64 `json:"engine_fetched_per_useful"`
	NaivePerUseful  float64 `json:"naive_fetched_per_useful"`
	// How far the follower's proven tip trails the primary's at the end
	// (blocks), and the time from a block proven at the primary to the
	// same block proven at the follower (a block still unproven there at
	// the end counts the time until the end, a lower bound).
	EngineProvenLag   int64   `json:"engine_proven_lag_blocks"`
	NaiveProvenLag    int64   `json:"naive_proven_lag_blocks"`
	EngineProvenP50ms float64 `json:"engine_proven_p50_ms"`
	EngineProvenP99ms float64 `json:"engine_proven_p99_ms"`
	ProofsMeasured    int     `json:"proofs_measured"`
}

// ProofsResult: bytes fetched per useful byte at several proof delays (0:
// proofs are there when the block is fetched). The top-level keys are those
// of the longest delay.
type ProofsResult struct {
	ProofRow
	Rows []ProofRow `json:"delays"`
}

// proofRun is one row's setting.
type proofRun struct {
	delay, interval, run time.Duration
}

func proofs(quick bool) (*ProofsResult, error) {
	// A 30 s delay needs a longer run (its first proofs come 30 s in) and
	// slower blocks (or its tail of unproven blocks is 60 deep).
	runs := []proofRun{
		{0, 500 * time.Millisecond, 40 * time.Second},
		{2 * time.Second, 500 * time.Millisecond, 40 * time.Second},
		{6 * time.Second, 500 * time.Millisecond, 40 * time.Second},
		{30 * time.Second, time.Second, 150 * time.Second},
	}
	if quick {
		runs = []proofRun{
			{0, 250 * time.Millisecond, 12 * time.Second},
			{2 * time.Second, 250 * time.Millisecond, 12 * time.Second},
		}
	}
	res := &ProofsResult{}
	for _, r := range runs {
		row, err := proofsAt(r)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "proofs %s behind: engine %.3f, naive %.3f fetched per useful byte\n", r.delay, row.EnginePerUseful, row.NaivePerUseful)
		res.Rows = append(res.Rows, *row)
		res.ProofRow = *row
	}
	fmt.Printf("\n### proofs: bytes fetched per useful byte (blocks and proofs), standard blocks, proofs delay ± 20%% behind their blocks, poll interval %s\n\n", pollInterval)
	fmt.Println("| proofs behind commits | block every | run | blocks | unique MB | engine MB | naive MB | engine fetched/useful | naive fetched/useful | engine proven lag (blocks) | engine proven p50 / p99 ms behind primary |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %s ± %s | %s | %.0fs | %d | %.1f | %.1f | %.1f | %.3f | %.3f | %d | %.0f / %.0f |\n",
			time.Duration(r.ProveDelayMs)*time.Millisecond, time.Duration(r.ProveJitterMs)*time.Millisecond,
			time.Duration(r.IntervalMs)*time.Millisecond, r.RunS, r.Blocks,
			float64(r.UniqueBytes)/1e6, float64(r.EngineBytes)/1e6, float64(r.NaiveBytes)/1e6, r.EnginePerUseful, r.NaivePerUseful,
			r.EngineProvenLag, r.EngineProvenP50ms, r.EngineProvenP99ms)
	}
	return res, nil
}

// proofsAt runs the engine and the naive loop side by side against a primary
// whose proofs lag its commits by r.delay ± 20%.
func proofsAt(r proofRun) (*ProofRow, error) {
	jitter := r.delay / 5
	p, err := startProducing(r.interval, r.delay, jitter)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pc := watchCommits(ctx, p.node.Store())
	fdir, _ := os.MkdirTemp("", "bench-proofs-engine-")
	defer os.RemoveAll(fdir)
	f, err := runtime.New(runtime.Config{DataDir: fdir, Genesis: p.genesisPath(), Upstreams: []string{p.node.PublicAddr()},
		Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Engine: actors.Config{PollInterval: pollInterval}, Log: quiet})
	if err != nil {
		return nil, err
	}
	if err := f.Start(); err != nil {
		return nil, err
	}
	fc := watchCommits(ctx, f.Store())
	ndir, _ := os.MkdirTemp("", "bench-proofs-naive-")
	defer os.RemoveAll(ndir)
	nst, err := store.Open(ndir, f.Store().Genesis())
	if err != nil {
		return nil, err
	}
	nf, stopNaive, err := runNaive(ctx, nst, p.node.PublicAddr(), true)
	if err != nil {
		return nil, err
	}
	time.Sleep(r.run) // the scenario's duration: the primary produces and proves meanwhile
	end := time.Now()
	_, primaryProven := p.node.Store().Tips()
	_, engineProven := f.Store().Tips()
	_, naiveProven := nst.Tips()
	cancel()
	stopNaive()
	st := f.Engine().Stats()
	engineBytes, engineUseful := st.FetchedBytes.Load(), st.UsefulBytes.Load()
	ec, _ := f.Store().Tips()
	if err := f.Stop(); err != nil {
		return nil, err
	}
	nc, _ := nst.Tips()
	nst.Close()
	naiveBytes, naiveUseful := nf.totals()

	blocks := min(ec, nc)
	var unique int64
	snap := p.node.Store().Snapshot()
	for n := uint64(1); n <= blocks; n++ {
		b, err := snap.BlockBytes(n)
		if err != nil {
			return nil, err
		}
		unique += int64(len(b))
		if n <= primaryProven {
			pr, err := snap.ProofBytes(n)
			if err != nil {
				return nil, err
			}
			unique += int64(len(pr))
		}
	}
	var provenMs []float64
	for n := uint64(1); n <= primaryProven; n++ {
		pt, ok := pc.provenAt(n)
		if !ok {
			continue
		}
		ft, ok := fc.provenAt(n)
		if !ok {
			ft = end
		}
		provenMs = append(provenMs, float64(ft.Sub(pt).Microseconds())/1000)
	}
	row := &ProofRow{ProveDelayMs: r.delay.Milliseconds(), ProveJitterMs: jitter.Milliseconds(), IntervalMs: r.interval.Milliseconds(),
		RunS: r.run.Seconds(), Blocks: int(blocks), UniqueBytes: unique,
		EngineBytes: engineBytes, EngineUseful: engineUseful, NaiveBytes: naiveBytes, NaiveUseful: naiveUseful,
		EngineProvenLag: int64(primaryProven) - int64(engineProven), NaiveProvenLag: int64(primaryProven) - int64(naiveProven),
		EngineProvenP50ms: percentile(provenMs, .5), EngineProvenP99ms: percentile(provenMs, .99), ProofsMeasured: len(provenMs)}
	if engineUseful > 0 {
		row.EnginePerUseful = float64(engineBytes) / float64(engineUseful)
	}
	if naiveUseful > 0 {
		row.NaivePerUseful = float64(naiveBytes) / float64(naiveUseful)
	}
	return row, nil
}
