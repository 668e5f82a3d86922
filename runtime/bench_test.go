package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"storesync/block"
	"storesync/primary"
	"storesync/store"
	"storesync/workload"
)

// BenchmarkCatchUp: a fresh follower syncs a chain of `standard` blocks
// (STORESYNC_CATCHUP_BLOCKS, default 2000) from a primary over loopback gRPC,
// next to the apply-only limit measured in the same run: the same blocks,
// already decoded in memory, applied to a fresh store. Run with -benchtime 1x.
func BenchmarkCatchUp(b *testing.B) {
	n := 2000
	if v := os.Getenv("STORESYNC_CATCHUP_BLOCKS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	p, _ := workload.ProfileByName("standard")
	c, err := workload.BuildChain(17, p, n, 1000)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var bytes int
	for _, blk := range c.Blocks {
		bytes += blk.Size()
	}

	// The apply-only limit.
	limitStore, err := store.Open(b.TempDir(), c.Genesis)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for _, blk := range c.Blocks {
		if _, err := limitStore.ApplyBlock(ctx, blk); err != nil {
			b.Fatal(err)
		}
	}
	limit := time.Since(start)
	limitStore.Close()

	// The primary, preloaded with the chain and its proofs.
	pdir := b.TempDir()
	if err := c.Genesis.Save(filepath.Join(pdir, primary.GenesisFile)); err != nil {
		b.Fatal(err)
	}
	ps, err := store.Open(filepath.Join(pdir, primary.StoreDir), c.Genesis)
	if err != nil {
		b.Fatal(err)
	}
	for i, blk := range c.Blocks {
		if _, err := ps.ApplyBlock(ctx, blk); err != nil {
			b.Fatal(err)
		}
		k := uint64(i + 1)
		if err := ps.ApplyProof(ctx, k, block.Prove(c.Keys.Prover, k, c.States[k].Commitment).Encode()); err != nil {
			b.Fatal(err)
		}
	}
	ps.Close()
	pn, err := primary.New(primary.Config{DataDir: pdir, Listen: "127.0.0.1:0", InternalListen: "127.0.0.1:0", Profile: "standard", ShutdownGrace: time.Second, Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	pdone := make(chan error, 1)
	go func() { pdone <- pn.Run(pctx) }()
	defer func() { cancel(); <-pdone }()

	var engine time.Duration
	for range b.N {
		f, err := New(Config{DataDir: b.TempDir(), Genesis: filepath.Join(pdir, primary.GenesisFile), Upstreams: []string{pn.PublicAddr()},
			Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Log: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := f.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			if c, p := f.Store().Tips(); c == uint64(n) && p == uint64(n) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("catch-up did not finish in 10 minutes")
			}
			time.Sleep(time.Millisecond)
		}
		engine += time.Since(start)
		st := f.Status()
		if err := f.Stop(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Redundant)/float64(n), "redundant-B/blk")
	}
	engine /= time.Duration(b.N)
	bps := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	b.ReportMetric(bps(engine), "engine-blocks/s")
	b.ReportMetric(bps(limit), "apply-only-blocks/s")
	b.ReportMetric(float64(bytes)/1e6/engine.Seconds(), "engine-MB/s")
	b.ReportMetric(bps(engine)/bps(limit), "engine/limit")
}
