package reliability

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"storesync/actors"
	"storesync/internal/testnet"
)

// TestStallingUpstream: a follower with two upstreams, the primary itself
// and a store in front of it that holds one GetBlockByNumber call in ten for
// 30 s (past the engine's default 10 s fetch timeout). Without hedging,
// each held call for the block at the head of the line would stop the
// follower's commits for the whole fetch timeout: 100 blocks at a block
// every 100 ms. With hedging, the late call is asked of the primary too, so
// the follower stays within a few blocks of the primary throughout, and
// ends on its very chain.
func TestStallingUpstream(t *testing.T) {
	t.Run("polled", func(t *testing.T) { stallingUpstream(t, false) })
	// Both upstreams hold calls (the default between stores of this
	// build), the stalling one stalls some of the held ones too: a held
	// probe overdue by the chain's cadence is hedged at the primary.
	t.Run("held", func(t *testing.T) { stallingUpstream(t, true) })
}

func stallingUpstream(t *testing.T, holds bool) {
	const (
		interval = 100 * time.Millisecond
		sampling = 15 * time.Second
		every    = 10
		stall    = 30 * time.Second
		// maxLag: within it in nearly all samples. A loaded machine under
		// -race falls a few blocks behind now and then; one stalled call
		// waited out would cost 100.
		maxLag   = 10
		minShare = 0.95
		// minStalls: the stalling store must have held some calls, or the
		// test exercised nothing.
		minStalls = 3
	)
	p := testnet.StartPrimary(t, interval, nil)
	newStaller := testnet.NewStalling
	if holds {
		newStaller = testnet.NewStallingHolding
	}
	s, err := newStaller(p.PublicAddr(), every, stall)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	// The engine's defaults, its 10 s fetch timeout included.
	f := startFollowerOf(t, t.TempDir(), []string{p.PublicAddr(), s.Addr()}, testnet.GenesisOf(p.Node), actors.Config{})
	primaryTip := func() uint64 { c, _ := p.Store().Tips(); return c }
	committed := func() uint64 { c, _ := f.Store().Tips(); return c }

	// Caught up: within maxLag of the primary's tip as it is then, not of
	// the tip when the wait began (the primary moves on meanwhile).
	testnet.WaitFor(t, 60*time.Second, fmt.Sprintf("the follower to be within %d blocks of the primary", maxLag),
		func() bool { pt := primaryTip(); return committed()+maxLag >= pt })

	// Sampled on a ticker, the primary's tip first, so that a sample
	// never shows the follower ahead. Held while sampled: the calls held
	// when sampling starts (a fresh follower asks its whole window at
	// once, blocks not made yet included, and a call held then matters
	// when its block comes due) and those held later.
	heldAtStart, stalledBefore, callsBefore := s.Holding(), s.Stalled(), s.Calls()
	var lags []uint64
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.After(sampling)
	for sampled := false; !sampled; {
		select {
		case <-tick.C:
			pt := primaryTip()
			lags = append(lags, pt-min(pt, committed()))
		case <-end:
			sampled = true
		}
	}
	// within counts the samples within maxLag; over lists the spells
	// beyond it (from and to in seconds into the sampling, and the peak),
	// for the log.
	within, over := 0, ""
	for k := 0; k < len(lags); k++ {
		if lags[k] <= maxLag {
			within++
			continue
		}
		j, peak := k, lags[k]
		for ; j+1 < len(lags) && lags[j+1] > maxLag; j++ {
			peak = max(peak, lags[j+1])
		}
		over += fmt.Sprintf(" %.1f-%.1fs (peak %d)", float64(k)/10, float64(j+1)/10, peak)
		k = j
	}
	if over == "" {
		over = " none"
	}
	share := float64(within) / float64(len(lags))
	sorted := slices.Clone(lags)
	slices.Sort(sorted)
	st := f.Status()
	t.Logf("%d samples over %s: lag p50 %d, p99 %d, max %d blocks; within %d blocks: %.1f%%; stalling store: %d calls (%d while sampled), %d held (%d while sampled); fetched/useful %.3f; spells beyond %d blocks:%s",
		len(lags), sampling, sorted[len(sorted)/2], sorted[min(len(sorted)-1, len(sorted)*99/100)], sorted[len(sorted)-1],
		maxLag, 100*share, s.Calls(), s.Calls()-callsBefore, s.Stalled(), heldAtStart+s.Stalled()-stalledBefore, st.FetchedPerUseful, maxLag, over)
	if share < minShare {
		t.Errorf("the follower was within %d blocks of the primary in %.1f%% of the samples, want at least %.0f%%", maxLag, 100*share, 100*minShare)
	}
	if s.Stalled() < minStalls {
		t.Errorf("the stalling store held %d calls (of %d), want at least %d: the test exercised too little", s.Stalled(), s.Calls(), minStalls)
	}
	testnet.SameChain(t, p.Store(), f.Store())
}
