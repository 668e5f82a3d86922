package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"storesync/actors"
	"storesync/api/storev1"
	"storesync/merkle"
	"storesync/runtime"
	"storesync/store"
)

// IsolationResult: the primary's commit latency (block timestamp to commit)
// idle, under a read flood sent to it directly, and under the same flood
// sent to two followers instead.
type IsolationResult struct {
	IdleP50ms      float64 `json:"idle_p50_ms"`
	IdleP99ms      float64 `json:"idle_p99_ms"`
	DirectP50ms    float64 `json:"direct_p50_ms"`
	DirectP99ms    float64 `json:"direct_p99_ms"`
	FollowersP50ms float64 `json:"followers_p50_ms"`
	FollowersP99ms float64 `json:"followers_p99_ms"`
	ReadsPerS      float64 `json:"reads_per_s"` // served by the followers
	DirectReadsPS  float64 `json:"direct_reads_per_s"`
}

const floodClients = 16

// flood sends a mix of reads (GetBlockByNumber, GetAccount, CheckNullifiers)
// from floodClients goroutines to the addresses, round robin, until ctx ends.
func flood(ctx context.Context, addrs []string, st *store.Store) (int64, error) {
	var clients []storev1.StoreClient
	for _, a := range addrs {
		c, closeConn, err := dial(a)
		if err != nil {
			return 0, err
		}
		defer closeConn()
		clients = append(clients, c)
	}
	var served atomic.Int64
	var wg sync.WaitGroup
	for g := range floodClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			c := clients[g%len(clients)]
			for ctx.Err() == nil {
				tip, _ := st.Tips()
				if tip == 0 {
					continue
				}
				var err error
				switch r.IntN(3) {
				case 0:
					_, err = c.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: 1 + r.Uint64N(tip), IncludeProof: true})
				case 1:
					b, berr := st.Block(1 + r.Uint64N(tip))
					if berr != nil || len(b.Body.Accounts) == 0 {
						continue
					}
					id := b.Body.Accounts[r.IntN(len(b.Body.Accounts))].ID
					_, err = c.GetAccount(ctx, &storev1.GetAccountRequest{AccountId: id[:]})
				default:
					nfs := make([][]byte, 16)
					for i := range nfs {
						h := merkle.Sum(fmt.Appendf(nil, "nf%d", r.Uint64()))
						nfs[i] = h[:]
					}
					_, err = c.CheckNullifiers(ctx, &storev1.CheckNullifiersRequest{Nullifiers: nfs})
				}
				if err == nil {
					served.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return served.Load(), nil
}

// commitLatencies are the primary's block timestamp to commit times (ms) of
// the blocks committed in [from, to].
func commitLatencies(st *store.Store, c *commits, from, to uint64) []float64 {
	var out []float64
	sn := st.Snapshot()
	for n := from; n <= to; n++ {
		at, ok := c.get(n)
		h, err := sn.Header(context.Background(), n)
		if !ok || err != nil {
			continue
		}
		out = append(out, float64(at.Sub(time.UnixMilli(int64(h.Timestamp))).Microseconds())/1000)
	}
	return out
}

func isolation(quick bool) (*IsolationResult, error) {
	phase := 20 * time.Second
	if quick {
		phase = 5 * time.Second
	}
	p, err := startProducing(100*time.Millisecond, time.Second)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pst := p.node.Store()
	pc := watchCommits(ctx, pst)
	var followers []*runtime.Follower
	for range 2 {
		dir, _ := os.MkdirTemp("", "bench-isolation-")
		defer os.RemoveAll(dir)
		f, err := runtime.New(runtime.Config{DataDir: dir, Genesis: p.genesisPath(), Upstreams: []string{p.node.PublicAddr()},
			Listen: "127.0.0.1:0", ShutdownGrace: time.Second, Engine: actors.Config{PollInterval: pollInterval}, Log: quiet})
		if err != nil {
			return nil, err
		}
		if err := f.Start(); err != nil {
			return nil, err
		}
		defer f.Stop()
		followers = append(followers, f)
	}
	measure := func(addrs []string) ([]float64, float64, error) {
		from, _ := pst.Tips()
		start := time.Now()
		var served int64
		if len(addrs) > 0 {
			fctx, fcancel := context.WithTimeout(ctx, phase)
			var err error
			served, err = flood(fctx, addrs, pst)
			fcancel()
			if err != nil {
				return nil, 0, err
			}
		} else {
			time.Sleep(phase) // idle: the primary only produces
		}
		to, _ := pst.Tips()
		return commitLatencies(pst, pc, from+1, to), float64(served) / time.Since(start).Seconds(), nil
	}
	idle, _, err := measure(nil)
	if err != nil {
		return nil, err
	}
	direct, directRPS, err := measure([]string{p.node.PublicAddr()})
	if err != nil {
		return nil, err
	}
	viaFollowers, rps, err := measure([]string{followers[0].Addr(), followers[1].Addr()})
	if err != nil {
		return nil, err
	}
	res := &IsolationResult{IdleP50ms: percentile(idle, .5), IdleP99ms: percentile(idle, .99),
		DirectP50ms: percentile(direct, .5), DirectP99ms: percentile(direct, .99),
		FollowersP50ms: percentile(viaFollowers, .5), FollowersP99ms: percentile(viaFollowers, .99),
		ReadsPerS: rps, DirectReadsPS: directRPS}
	fmt.Printf("\n### isolation: the primary's commit latency (block time to commit, ms), a standard block every 100ms, %d flooding clients\n\n", floodClients)
	fmt.Println("| reads go to | commit p50 | commit p99 | reads/s served |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| nobody (idle) | %.1f | %.1f | 0 |\n", res.IdleP50ms, res.IdleP99ms)
	fmt.Printf("| the primary | %.1f | %.1f | %.0f |\n", res.DirectP50ms, res.DirectP99ms, res.DirectReadsPS)
	fmt.Printf("| two followers | %.1f | %.1f | %.0f |\n", res.FollowersP50ms, res.FollowersP99ms, res.ReadsPerS)
	return res, nil
}
