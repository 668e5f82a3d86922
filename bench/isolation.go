package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
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
	Blocks         [3]int  `json:"blocks"` // committed in each phase: idle, direct, followers
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

// The isolation scenario runs the primary in a child process pinned to one
// core and everything else (followers, flooding clients) on the other: on a
// 2-core machine that is the closest to "followers on other machines" that
// can be measured. In one process (or unpinned) a flood to the followers
// takes the primary's CPU as much as a flood to the primary does, and the
// measurement shows the machine, not the design.
const (
	primaryCore = "0"
	othersCore  = "1"
	// isolationChild is the hidden scenario the child runs.
	isolationChild = "isolation-primary"
)

// isolationPrimary is the child: a primary producing a standard block every
// 100 ms; it prints its public address and genesis path, then a line
// "n latency_ms" per committed block (block timestamp to commit), until
// stdin closes.
func isolationPrimary() error {
	p, err := startProducing(100*time.Millisecond, time.Second, 0)
	if err != nil {
		return err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := p.node.Store()
	fmt.Printf("%s %s\n", p.node.PublicAddr(), p.genesisPath())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var seen uint64
	for {
		ch := st.Changed()
		tip, _ := st.Tips()
		now := time.Now()
		sn := st.Snapshot()
		for n := seen + 1; n <= tip; n++ {
			if h, err := sn.Header(ctx, n); err == nil {
				fmt.Printf("%d %.3f\n", n, float64(now.Sub(time.UnixMilli(int64(h.Timestamp))).Microseconds())/1000)
			}
		}
		seen = max(seen, tip)
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

// pinnedPrimary is the parent's handle on the child.
type pinnedPrimary struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	addr    string
	genesis string
	mu      sync.Mutex
	lat     []float64 // commit latencies in arrival order
}

func startPinnedPrimary() (*pinnedPrimary, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", "-c", primaryCore, self, isolationChild)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the pinned primary (needs taskset): %w", err)
	}
	pp := &pinnedPrimary{cmd: cmd, stdin: stdin}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		pp.stop()
		return nil, fmt.Errorf("the pinned primary printed no address")
	}
	if _, err := fmt.Sscan(sc.Text(), &pp.addr, &pp.genesis); err != nil {
		pp.stop()
		return nil, fmt.Errorf("the pinned primary's first line %q: %w", sc.Text(), err)
	}
	go func() {
		for sc.Scan() {
			var n uint64
			var ms float64
			if _, err := fmt.Sscan(sc.Text(), &n, &ms); err == nil {
				pp.mu.Lock()
				pp.lat = append(pp.lat, ms)
				pp.mu.Unlock()
			}
		}
	}()
	return pp, nil
}

// mark is where the latencies of a phase start.
func (pp *pinnedPrimary) mark() int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return len(pp.lat)
}

func (pp *pinnedPrimary) since(i int) []float64 {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return slices.Clone(pp.lat[i:])
}

func (pp *pinnedPrimary) stop() {
	_ = pp.stdin.Close()
	done := make(chan struct{})
	go func() { _ = pp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = pp.cmd.Process.Kill()
		<-done
	}
}

// pinSelf moves every thread of this process to one core (taskset -a: Go
// has several threads already, and new ones inherit the mask).
func pinSelf(core string) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", core, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pin to core %s: %v: %s", core, err, out)
	}
	return nil
}

func isolation(quick bool) (*IsolationResult, error) {
	phase := 20 * time.Second
	if quick {
		phase = 5 * time.Second
	}
	pp, err := startPinnedPrimary()
	if err != nil {
		return nil, err
	}
	defer pp.stop()
	if err := pinSelf(othersCore); err != nil {
		return nil, err
	}
	defer func() {
		_ = exec.Command("taskset", "-a", "-p", "-c", primaryCore+","+othersCore, strconv.Itoa(os.Getpid())).Run()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var followers []*runtime.Follower
	for range 2 {
		dir, _ := os.MkdirTemp("", "bench-isolation-")
		defer os.RemoveAll(dir)
		f, err := runtime.New(runtime.Config{DataDir: dir, Genesis: pp.genesis, Upstreams: []string{pp.addr},
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
	// Reads pick their block numbers and account ids from a follower's
	// store: the primary is in another process.
	st := followers[0].Store()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if tip, _ := st.Tips(); tip >= 5 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the followers did not start syncing from the pinned primary")
		}
	}
	measure := func(addrs []string) ([]float64, float64, error) {
		from := pp.mark()
		start := time.Now()
		var served int64
		if len(addrs) > 0 {
			fctx, fcancel := context.WithTimeout(ctx, phase)
			var err error
			served, err = flood(fctx, addrs, st)
			fcancel()
			if err != nil {
				return nil, 0, err
			}
		} else {
			time.Sleep(phase) // idle: the primary only produces and serves its followers
		}
		return pp.since(from), float64(served) / time.Since(start).Seconds(), nil
	}
	idle, _, err := measure(nil)
	if err != nil {
		return nil, err
	}
	direct, directRPS, err := measure([]string{pp.addr})
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
		ReadsPerS: rps, DirectReadsPS: directRPS, Blocks: [3]int{len(idle), len(direct), len(viaFollowers)}}
	fmt.Printf("\n### isolation: the primary's commit latency (block time to commit, ms); primary pinned to core %s, followers and %d flooding clients to core %s; a standard block every 100ms\n\n", primaryCore, floodClients, othersCore)
	fmt.Println("| reads go to | blocks | commit p50 | commit p99 | p99 / idle p99 | reads/s served |")
	fmt.Println("|---|---|---|---|---|---|")
	fmt.Printf("| nobody (idle) | %d | %.1f | %.1f | 1.00 | 0 |\n", res.Blocks[0], res.IdleP50ms, res.IdleP99ms)
	fmt.Printf("| the primary | %d | %.1f | %.1f | %.2f | %.0f |\n", res.Blocks[1], res.DirectP50ms, res.DirectP99ms, res.DirectP99ms/res.IdleP99ms, res.DirectReadsPS)
	fmt.Printf("| two followers | %d | %.1f | %.1f | %.2f | %.0f |\n", res.Blocks[2], res.FollowersP50ms, res.FollowersP99ms, res.FollowersP99ms/res.IdleP99ms, res.ReadsPerS)
	return res, nil
}
