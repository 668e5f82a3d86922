package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"storesync/actors"
	"storesync/api/storev1"
	"storesync/merkle"
	"storesync/runtime"
	"storesync/store"
)

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
// can be measured. Commit latency cannot tell the phases apart on two shared
// virtual CPUs (the disk, the last-level cache and the host's cores are
// shared whatever the pinning), so the scenario reads the primary's own
// account of its work, from its /metrics: its CPU seconds (the process
// collector, from /proc/self), the calls it served by method and the bytes
// it sent. A read sent to a follower is a read the primary never sees.
const (
	primaryCore = "0"
	othersCore  = "1"
	// isolationChild is the hidden scenario the child runs.
	isolationChild = "isolation-primary"
	// isolationInterval: blocks fast enough that a phase holds hundreds.
	isolationInterval = 100 * time.Millisecond
	// fanOutInterval: slower blocks for the fan-out rows, so that eight
	// followers applying every block on one core keep up (a follower that
	// falls behind catches up, which is other work than following).
	fanOutInterval = 500 * time.Millisecond
	// isolationRounds: phases are interleaved (idle, primary, followers)
	// and repeated, so that drift over the run (the chain grows, the page
	// cache fills) lands on every phase alike and the idle rounds show the
	// spread a difference must exceed.
	isolationRounds = 3
	// isolationWarmUp: how long the primary runs, followed, before the
	// first phase (10 s with --quick's 5 s phases).
	isolationWarmUp = 30 * time.Second
)

// isolationPrimary is the child: a primary producing a standard block every
// interval (its argument); it prints its public address, genesis path and
// HTTP address, then a line "n latency_ms" per committed block (block
// timestamp to commit), until stdin closes.
func isolationPrimary(interval time.Duration) error {
	p, err := startProducing(interval, time.Second, 0)
	if err != nil {
		return err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := p.node.Store()
	fmt.Printf("%s %s %s\n", p.node.PublicAddr(), p.genesisPath(), p.node.HTTPAddr())
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
	http    string
	mu      sync.Mutex
	lat     []float64 // commit latencies in arrival order
}

func startPinnedPrimary(interval time.Duration) (*pinnedPrimary, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", "-c", primaryCore, self, isolationChild, interval.String())
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
	if _, err := fmt.Sscan(sc.Text(), &pp.addr, &pp.genesis, &pp.http); err != nil {
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

// work is what a store says it has done so far, read from its /metrics.
type work struct {
	at    time.Time
	cpu   float64            // process_cpu_seconds_total
	calls map[string]float64 // storesync_read_requests_total by method (every code)
	sent  float64            // storesync_grpc_sent_bytes_total, every method
	tip   float64            // storesync_committed_tip
}

// scrapeWork reads a store's /metrics.
func scrapeWork(httpAddr string) (work, error) {
	w := work{calls: map[string]float64{}}
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return w, fmt.Errorf("scrape %s: %w", httpAddr, err)
	}
	defer resp.Body.Close()
	w.at = time.Now()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return w, fmt.Errorf("scrape %s: parse: %w", httpAddr, err)
	}
	value := func(m *dto.Metric) float64 {
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
		return 0
	}
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.Label {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			switch name {
			case "process_cpu_seconds_total":
				w.cpu = value(m)
			case "storesync_read_requests_total":
				meth := label(m, "method")
				w.calls[meth[strings.LastIndexByte(meth, '/')+1:]] += value(m)
			case "storesync_grpc_sent_bytes_total":
				w.sent += value(m)
			case "storesync_committed_tip":
				w.tip = value(m)
			}
		}
	}
	if _, ok := fams["process_cpu_seconds_total"]; !ok {
		return w, fmt.Errorf("scrape %s: no process_cpu_seconds_total (the process collector reads /proc)", httpAddr)
	}
	return w, nil
}

// workDelta is a store's work between two scrapes.
type workDelta struct {
	Seconds float64            `json:"seconds"`
	CPU     float64            `json:"cpu_s"`
	Calls   map[string]float64 `json:"calls"`
	Sent    float64            `json:"sent_bytes"`
	Blocks  float64            `json:"blocks"`
}

func (a work) to(b work) workDelta {
	d := workDelta{Seconds: b.at.Sub(a.at).Seconds(), CPU: b.cpu - a.cpu, Sent: b.sent - a.sent, Blocks: b.tip - a.tip, Calls: map[string]float64{}}
	for m, v := range b.calls {
		if x := v - a.calls[m]; x > 0 {
			d.Calls[m] = x
		}
	}
	return d
}

func (d workDelta) totalCalls() float64 {
	var t float64
	for _, v := range d.Calls {
		t += v
	}
	return t
}

// IsolationPhase is one phase of one round.
type IsolationPhase struct {
	Kind    string    `json:"kind"` // idle, primary, followers, burner
	Round   int       `json:"round"`
	Blocks  int       `json:"blocks"`
	P50ms   float64   `json:"commit_p50_ms"`
	P99ms   float64   `json:"commit_p99_ms"`
	ReadsPS float64   `json:"reads_per_s"` // the flood's reads served (by whoever it went to)
	Primary workDelta `json:"primary"`     // the primary's own account
}

// FanOutRow: the primary's work per block with a set of followers.
type FanOutRow struct {
	Shape          string    `json:"shape"`
	Direct, Total  int       `json:"-"`
	CPUmsPerBlock  float64   `json:"cpu_ms_per_block"`
	CallsPerBlock  float64   `json:"calls_per_block"`
	KBSentPerBlock float64   `json:"kb_sent_per_block"`
	Primary        workDelta `json:"primary"`
}

// IsolationResult: per phase, the primary's commit latency and its own
// work, idle, under a read flood sent to it, and under the same flood sent
// to two followers; then the primary's work per block against the number
// and shape of its followers.
type IsolationResult struct {
	PhaseSeconds float64          `json:"phase_s"`
	Phases       []IsolationPhase `json:"phases"`
	FanOut       []FanOutRow      `json:"fan_out"`
}

// caughtUp waits until every follower is within 2 blocks of the primary.
func caughtUp(pp *pinnedPrimary, fs []*runtime.Follower, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		w, err := scrapeWork(pp.http)
		if err != nil {
			return err
		}
		behind := 0
		for _, f := range fs {
			if c, _ := f.Store().Tips(); float64(c)+2 < w.tip {
				behind++
			}
		}
		if behind == 0 && w.tip >= 5 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d followers not within 2 blocks of the primary's %v after %s", behind, len(fs), w.tip, within)
		}
		time.Sleep(100 * time.Millisecond) // a poll of another process's state: nothing to wait on
	}
}

func isolation(quick bool) (*IsolationResult, error) {
	phase, fanPhase := 20*time.Second, 20*time.Second
	if quick {
		phase, fanPhase = 5*time.Second, 5*time.Second
	}
	if err := pinSelf(othersCore); err != nil {
		return nil, err
	}
	defer func() {
		_ = exec.Command("taskset", "-a", "-p", "-c", primaryCore+","+othersCore, strconv.Itoa(os.Getpid())).Run()
	}()
	res := &IsolationResult{PhaseSeconds: phase.Seconds()}
	if err := isolationPhases(res, phase); err != nil {
		return nil, err
	}
	if err := isolationFanOut(res, fanPhase); err != nil {
		return nil, err
	}
	printIsolation(res)
	return res, nil
}

// isolationPhases measures idle, flood on the primary, flood on two
// followers and the burner control, interleaved, isolationRounds times.
func isolationPhases(res *IsolationResult, phase time.Duration) error {
	pp, err := startPinnedPrimary(isolationInterval)
	if err != nil {
		return err
	}
	defer pp.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var followers []*runtime.Follower
	for range 2 {
		f, stop, err := startFollower("bench-isolation-", pp.genesis, pp.addr, actors.Config{PollInterval: pollInterval})
		if err != nil {
			return err
		}
		defer stop()
		followers = append(followers, f)
	}
	if err := caughtUp(pp, followers, 60*time.Second); err != nil {
		return err
	}
	// Reads pick their block numbers and account ids from a follower's
	// store: the primary is in another process.
	st := followers[0].Store()
	measure := func(kind string, round int, addrs []string) error {
		from := pp.mark()
		before, err := scrapeWork(pp.http)
		if err != nil {
			return err
		}
		var served int64
		if kind == "burner" {
			burn(phase)
		} else if len(addrs) > 0 {
			fctx, fcancel := context.WithTimeout(ctx, phase)
			served, err = flood(fctx, addrs, st)
			fcancel()
			if err != nil {
				return err
			}
		} else {
			time.Sleep(phase) // idle: the primary only produces and serves its followers
		}
		after, err := scrapeWork(pp.http)
		if err != nil {
			return err
		}
		lat := pp.since(from)
		d := before.to(after)
		res.Phases = append(res.Phases, IsolationPhase{Kind: kind, Round: round, Blocks: len(lat), P50ms: percentile(lat, .5), P99ms: percentile(lat, .99),
			ReadsPS: float64(served) / d.Seconds, Primary: d})
		return nil
	}
	// Warm up: a young primary's work per block grows for its first tens
	// of seconds (its trees deepen, its state database starts flushing
	// and compacting), which put the first idle round far below the
	// others. Not measured.
	time.Sleep(min(isolationWarmUp, 2*phase))
	for r := range isolationRounds {
		if err := measure("idle", r, nil); err != nil {
			return err
		}
		if err := measure("primary", r, []string{pp.addr}); err != nil {
			return err
		}
		if err := measure("followers", r, []string{followers[0].Addr(), followers[1].Addr()}); err != nil {
			return err
		}
		if err := measure("burner", r, nil); err != nil {
			return err
		}
	}
	return nil
}

// burn keeps this process's core busy with arithmetic for d: no reads, no
// I/O, nothing the primary serves. It is the control of the followers
// phase: what the primary's counters do when the other core is merely
// busy (the two virtual CPUs share a host core's caches, or the core
// itself) rather than serving reads.
func burn(d time.Duration) {
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for time.Now().Before(deadline) {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			burnSink.Add(x)
		}()
	}
	wg.Wait()
}

// burnSink keeps the burner's arithmetic from being optimised away.
var burnSink atomic.Uint64

// isolationFanOut measures the primary's work per block with 1, 2, 4 and 8
// direct followers, then 8 as a tree (2 direct, 3 below each).
func isolationFanOut(res *IsolationResult, phase time.Duration) error {
	pp, err := startPinnedPrimary(fanOutInterval)
	if err != nil {
		return err
	}
	defer pp.stop()
	var all []*runtime.Follower
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	measure := func(shape string, direct int) error {
		if err := caughtUp(pp, all, 2*time.Minute); err != nil {
			return fmt.Errorf("fan-out %s: %w", shape, err)
		}
		before, err := scrapeWork(pp.http)
		if err != nil {
			return err
		}
		time.Sleep(phase) // the steady state is what is measured
		after, err := scrapeWork(pp.http)
		if err != nil {
			return err
		}
		d := before.to(after)
		blocks := max(d.Blocks, 1)
		res.FanOut = append(res.FanOut, FanOutRow{Shape: shape, Direct: direct, Total: len(all), Primary: d,
			CPUmsPerBlock: d.CPU * 1000 / blocks, CallsPerBlock: d.totalCalls() / blocks, KBSentPerBlock: d.Sent / 1000 / blocks})
		return nil
	}
	add := func(upstream string) (*runtime.Follower, error) {
		f, stop, err := startFollower("bench-isolation-", pp.genesis, upstream, actors.Config{PollInterval: pollInterval})
		if err != nil {
			return nil, err
		}
		all, stops = append(all, f), append(stops, stop)
		return f, nil
	}
	if err := measure("none", 0); err != nil {
		return err
	}
	for _, n := range []int{1, 2, 4, 8} {
		for len(all) < n {
			if _, err := add(pp.addr); err != nil {
				return err
			}
		}
		if err := measure(fmt.Sprintf("%d direct", n), n); err != nil {
			return err
		}
	}
	for _, s := range stops {
		s()
	}
	all, stops = nil, nil
	for range 2 {
		mid, err := add(pp.addr)
		if err != nil {
			return err
		}
		for range 3 {
			if _, err := add(mid.Addr()); err != nil {
				return err
			}
		}
	}
	return measure("tree: 2 direct, 3 below each", 2)
}

// spread is the median, min and max of xs.
func spread(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

func printIsolation(res *IsolationResult) {
	fmt.Printf("\n### isolation: the primary's own work and commit latency; primary pinned to core %s, followers and %d flooding clients to core %s; a standard block every %s, %d rounds of each phase interleaved\n\n",
		primaryCore, floodClients, othersCore, isolationInterval, isolationRounds)
	fmt.Println("Per phase: median over the rounds, with min-max. The primary's CPU, calls and bytes are its own counters (its /metrics: process_cpu_seconds_total, storesync_read_requests_total, storesync_grpc_sent_bytes_total).")
	fmt.Println()
	fmt.Println("| reads go to | blocks | commit p50 | commit p99 | primary CPU ms/s | primary calls/s | calls/s by method | primary KB sent/s | reads/s served |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	names := map[string]string{"idle": "nobody (idle)", "primary": "the primary", "followers": "two followers", "burner": "nobody, the other core busy (control)"}
	stat := map[string]float64{}
	for _, kind := range []string{"idle", "primary", "followers", "burner"} {
		var blocks, p50, p99, cpu, calls, sent, reads []float64
		byMethod := map[string][]float64{}
		for _, ph := range res.Phases {
			if ph.Kind != kind {
				continue
			}
			s := ph.Primary.Seconds
			blocks, p50, p99 = append(blocks, float64(ph.Blocks)), append(p50, ph.P50ms), append(p99, ph.P99ms)
			cpu, calls = append(cpu, ph.Primary.CPU*1000/s), append(calls, ph.Primary.totalCalls()/s)
			sent, reads = append(sent, ph.Primary.Sent/1000/s), append(reads, ph.ReadsPS)
			for m, v := range ph.Primary.Calls {
				byMethod[m] = append(byMethod[m], v/s)
			}
		}
		f := func(xs []float64, prec int) string {
			m, lo, hi := spread(xs)
			return fmt.Sprintf("%.*f (%.*f-%.*f)", prec, m, prec, lo, prec, hi)
		}
		methods := slices.Sorted(maps.Keys(byMethod))
		var bm []string
		for _, m := range methods {
			med, _, _ := spread(byMethod[m])
			bm = append(bm, fmt.Sprintf("%s %.1f", m, med))
		}
		medCPU, loCPU, hiCPU := spread(cpu)
		medCalls, loCalls, hiCalls := spread(calls)
		stat[kind+".cpu"], stat[kind+".cpu.lo"], stat[kind+".cpu.hi"] = medCPU, loCPU, hiCPU
		stat[kind+".calls"], stat[kind+".calls.lo"], stat[kind+".calls.hi"] = medCalls, loCalls, hiCalls
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", names[kind], f(blocks, 0), f(p50, 1), f(p99, 1), f(cpu, 1), f(calls, 1),
			strings.Join(bm, ", "), f(sent, 1), f(reads, 0))
	}
	// The target: with the flood on the followers, the primary's CPU and
	// calls per second within 5% of idle, or within the idle rounds' own
	// spread if that is larger.
	for _, what := range []string{"cpu", "calls"} {
		idle, fol, ctl := stat["idle."+what], stat["followers."+what], stat["burner."+what]
		tol := max(0.05*idle, stat["idle."+what+".hi"]-stat["idle."+what+".lo"])
		verdict := "met"
		if fol > idle+tol || fol < idle-tol {
			verdict = "NOT met"
		}
		fmt.Printf("\nflood on the followers, primary %s per second: %.2f against idle %.2f (%+.1f%%), allowed ±%.2f (5%% of idle or the idle rounds' spread): %s; the other core merely busy: %.2f (%+.1f%% of idle; the flood on the followers is %+.1f%% of that)\n",
			what, fol, idle, 100*(fol-idle)/idle, tol, verdict, ctl, 100*(ctl-idle)/idle, 100*(fol-ctl)/ctl)
	}
	fmt.Printf("\n### isolation fan-out: the primary's own work per block by its followers (a standard block every %s, %s measured after all caught up)\n\n", fanOutInterval, time.Duration(res.PhaseSeconds*float64(time.Second)))
	fmt.Println("| followers | direct | CPU ms/block | calls/block | calls by method (per block) | KB sent/block |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range res.FanOut {
		blocks := max(r.Primary.Blocks, 1)
		var bm []string
		for _, m := range slices.Sorted(maps.Keys(r.Primary.Calls)) {
			bm = append(bm, fmt.Sprintf("%s %.2f", m, r.Primary.Calls[m]/blocks))
		}
		fmt.Printf("| %s | %d | %.2f | %.2f | %s | %.1f |\n", r.Shape, r.Direct, r.CPUmsPerBlock, r.CallsPerBlock, strings.Join(bm, ", "), r.KBSentPerBlock)
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
