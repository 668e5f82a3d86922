package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"storesync/actors"
	"storesync/health"
	"storesync/internal/testnet"
	"storesync/runtime"
)

// StallRow is one follower's run beside a stalling upstream.
type StallRow struct {
	Name    string `json:"name"`
	Hedging bool   `json:"hedging"`
	// StallerHolds: the stalling store holds the calls that ask (as every
	// store of this build does), and stalls some of the held ones.
	StallerHolds bool `json:"staller_holds"`
	Samples      int  `json:"samples"`
	// Lag: the primary's committed tip minus the follower's, sampled.
	LagP50       uint64  `json:"lag_p50_blocks"`
	LagP99       uint64  `json:"lag_p99_blocks"`
	LagMax       uint64  `json:"lag_max_blocks"`
	WithinMaxLag float64 `json:"within_max_lag"` // share of samples with lag <= health.DefaultConfig.MaxLag
	// Readiness, sampled from the follower's health verdict after it first
	// turned ready: how many times it turned not ready, and the share of
	// those samples not ready.
	NotReadyFlips int     `json:"not_ready_flips"`
	NotReadyShare float64 `json:"not_ready_share"`
	// Commit latency: primary commit to follower commit, for the blocks the
	// primary committed while sampled (one the follower never committed
	// counts the time until the end, a lower bound).
	Blocks      int     `json:"blocks"`
	CommitP50ms float64 `json:"commit_p50_ms"`
	CommitP99ms float64 `json:"commit_p99_ms"`
	CommitMaxms float64 `json:"commit_max_ms"`
	// The stalling upstream's GetBlockByNumber calls and those it held.
	StallCalls       int64   `json:"stalling_calls"`
	Stalled          int64   `json:"stalled_calls"`
	FetchErrors      int64   `json:"fetch_errors"`
	FetchedPerUseful float64 `json:"fetched_per_useful"`
	lags             []uint64
}

// StallResult: a follower of a producing primary with two upstreams, the
// primary and a store in front of it that holds one GetBlockByNumber call
// in Every for StallS seconds, and holds the calls that ask like any store
// of this build (stalling some of those); with the engine's hedging off,
// then on, then on beside a stalling store that does not hold calls. The
// primary is PrimaryRTT ms away, the stalling store on loopback: the
// follower asks the nearer one first.
type StallResult struct {
	IntervalMs int64      `json:"block_interval_ms"`
	RunS       float64    `json:"run_s"`
	Every      int        `json:"every"`
	StallS     float64    `json:"stall_s"`
	PrimaryRTT int64      `json:"primary_rtt_ms"`
	MaxLag     uint64     `json:"max_lag"`
	Rows       []StallRow `json:"rows"`
}

const (
	stallEvery      = 30
	stallFor        = 20 * time.Second
	stallPrimaryRTT = 20 * time.Millisecond
)

func stallScenario(quick bool) (*StallResult, error) {
	interval, run := time.Second, 90*time.Second
	if quick {
		run = 30 * time.Second
	}
	res := &StallResult{IntervalMs: interval.Milliseconds(), RunS: run.Seconds(), Every: stallEvery, StallS: stallFor.Seconds(),
		MaxLag: health.DefaultConfig.MaxLag, PrimaryRTT: stallPrimaryRTT.Milliseconds()}
	for _, k := range []struct{ hedge, holds bool }{{false, true}, {true, true}, {true, false}} {
		row, err := stallAt(interval, run, k.hedge, k.holds)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "stall %s: lag max %d, within max-lag %.1f%%, commit p99 %.0f ms\n", row.Name, row.LagMax, 100*row.WithinMaxLag, row.CommitP99ms)
		res.Rows = append(res.Rows, *row)
	}
	fmt.Printf("\n### stall: a follower of the primary (which holds calls, %s away) and of a store in front of it (on loopback) holding 1 call in %d for %s (fetch timeout %s), a standard block every %s, %s\n\n",
		stallPrimaryRTT, stallEvery, stallFor, actors.DefaultConfig.FetchTimeout, interval, run)
	fmt.Printf("| engine | samples | lag p50 | p99 | max | within max-lag %d | not-ready flips | not ready | commit p50 ms | p99 | max | stalling calls | stalled | fetch errors | fetched/useful |\n", res.MaxLag)
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %s | %d | %d | %d | %d | %.1f%% | %d | %.1f%% | %.0f | %.0f | %.0f | %d | %d | %d | %.3f |\n", r.Name, r.Samples,
			r.LagP50, r.LagP99, r.LagMax, 100*r.WithinMaxLag, r.NotReadyFlips, 100*r.NotReadyShare,
			r.CommitP50ms, r.CommitP99ms, r.CommitMaxms, r.StallCalls, r.Stalled, r.FetchErrors, r.FetchedPerUseful)
	}
	return res, nil
}

// stallAt runs one follower for run, sampling it every 100 ms.
func stallAt(interval, run time.Duration, hedge, holds bool) (*StallRow, error) {
	p, err := startProducing(interval, time.Second, 200*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	newStaller := testnet.NewStalling
	if holds {
		newStaller = testnet.NewStallingHolding
	}
	s, err := newStaller(p.node.PublicAddr(), stallEvery, stallFor)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	// The primary is farther than the stalling store: the follower asks
	// the nearer one first, as it would a nearby follower, and its stalls
	// come at the head of the line.
	far, err := newLink(p.node.PublicAddr(), stallPrimaryRTT)
	if err != nil {
		return nil, err
	}
	defer far.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pc := watchCommits(ctx, p.node.Store())
	fdir, _ := os.MkdirTemp("", "bench-stall-")
	defer os.RemoveAll(fdir)
	f, err := runtime.New(runtime.Config{DataDir: fdir, Genesis: p.genesisPath(), Upstreams: []string{far.addr(), s.Addr()},
		Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Engine: actors.Config{PollInterval: pollInterval, NoHedge: !hedge}, Log: quiet})
	if err != nil {
		return nil, err
	}
	if err := f.Start(); err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			f.Stop()
		}
	}()
	fc := watchCommits(ctx, f.Store())
	primaryTip := func() uint64 { c, _ := p.node.Store().Tips(); return c }
	committed := func() uint64 { c, _ := f.Store().Tips(); return c }

	// From the follower's first block on: its start, when it asks its
	// whole window at once, is part of what a stalling upstream can hurt.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for committed() < 1 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the follower committed no block in 30 s")
		}
		<-tick.C
	}
	start := time.Now()
	from := primaryTip() + 1 // the first block whose commit latency counts
	row := &StallRow{Name: "engine", Hedging: hedge, StallerHolds: holds}
	switch {
	case !hedge:
		row.Name = "engine, hedging off"
	case !holds:
		row.Name = "engine, the stalling store does not hold calls"
	}
	var everReady, ready bool
	var readySamples, notReady int
	for end := start.Add(run); time.Now().Before(end); {
		<-tick.C
		pt := primaryTip()
		row.lags = append(row.lags, pt-min(pt, committed()))
		r := f.Health().Ready
		if everReady {
			readySamples++
			if !r {
				notReady++
			}
			if ready && !r {
				row.NotReadyFlips++
			}
		}
		everReady = everReady || r
		ready = r
	}
	end := time.Now()
	to := primaryTip()
	st := f.Status()
	row.StallCalls, row.Stalled, row.FetchErrors = s.Calls(), s.Stalled(), f.Engine().Stats().FetchErrors.Load()
	row.FetchedPerUseful = st.FetchedPerUseful
	stopped = true
	if err := f.Stop(); err != nil {
		return nil, err
	}

	var ms []float64
	for n := from; n <= to; n++ {
		pt, ok := pc.get(n)
		if !ok {
			continue
		}
		ft, ok := fc.get(n)
		if !ok {
			ft = end
		}
		ms = append(ms, float64(ft.Sub(pt).Microseconds())/1000)
	}
	row.Blocks = len(ms)
	row.CommitP50ms, row.CommitP99ms, row.CommitMaxms = percentile(ms, .5), percentile(ms, .99), percentile(ms, 1)
	row.Samples = len(row.lags)
	within := 0
	for _, l := range row.lags {
		if l <= health.DefaultConfig.MaxLag {
			within++
		}
	}
	if row.Samples > 0 {
		row.WithinMaxLag = float64(within) / float64(row.Samples)
		sorted := slices.Clone(row.lags)
		slices.Sort(sorted)
		q := func(p float64) uint64 { return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))] }
		row.LagP50, row.LagP99, row.LagMax = q(.5), q(.99), sorted[len(sorted)-1]
	}
	if readySamples > 0 {
		row.NotReadyShare = float64(notReady) / float64(readySamples)
	}
	return row, nil
}
