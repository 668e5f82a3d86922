// Command bench measures the replication engine side by side with the naive
// loop of the original design note and the apply-only limit, in one run, as
// ratios (these machines are shared and noisy).
//
//	go run ./bench [catchup|lag|proofs|stall|isolation|memory|all] [--quick] [--json FILE] [--plots DIR]
//	go run ./bench scale [--quick] [--scale-sizes 1e5,1e6,1e7] [--scale-blocks 1e3,1e5] [--scale-cache DIR] [--plots DIR]
//
// Network round trips are injected on loopback with toxiproxy (latency with
// jitter), never by sleeping in our own code. The stall scenario puts a
// store in front of the primary that holds some calls (internal/testnet's
// Stalling): a slow upstream, not a slow link.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"
)

// Results is what --json writes.
type Results struct {
	Machine   string           `json:"machine"`
	Quick     bool             `json:"quick"`
	Catchup   *CatchupResult   `json:"catchup,omitempty"`
	Lag       *LagResult       `json:"lag,omitempty"`
	Proofs    *ProofsResult    `json:"proofs,omitempty"`
	Stall     *StallResult     `json:"stall,omitempty"`
	Memory    *MemoryResult    `json:"memory,omitempty"`
	Isolation *IsolationResult `json:"isolation,omitempty"`
	Scale     *ScaleResult     `json:"scale,omitempty"`
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func main() {
	quick := flag.Bool("quick", false, "small runs: every scenario in under a minute")
	jsonOut := flag.String("json", "", "write the results as JSON to this file")
	plots := flag.String("plots", "", "write PNG charts to this directory")
	catchupProfiles := flag.String("catchup-profiles", "small,standard,large", "the block profiles the catchup scenario runs (without --quick)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	scaleSizes := flag.String("scale-sizes", "", "the state sizes (keys) the scale scenario measures (default "+scaleDefaultSizes+"; --quick: 1e5)")
	flag.StringVar(&scaleBlocksFlag, "scale-blocks", "", "the chain lengths (blocks of a small-profile chain) the scale scenario also measures, e.g. 1e3,1e5 (default none; --quick: "+scaleQuickBlocks+")")
	flag.StringVar(&scaleProfileDir, "scale-profile", "", "write CPU profiles of each size's reads and applies to this directory (<keys>-reads.pprof, <keys>-apply.pprof)")
	flag.IntVar(&scaleRecordLevels, "scale-record-levels", 0, "the tree levels one stored record spans in every store the scale scenario opens or builds (default: the store's); give it its own --scale-cache, as the states are built with it")
	flag.IntVar(&scaleNodeCacheMiB, "scale-node-cache", 0, "the node cache (MiB, the store's --node-cache) of each store the scale scenario measures (default: the store's); the memory limit it sets grows with it")
	scaleCache := flag.String("scale-cache", "", "where the scale scenario keeps its states between runs (default: the user cache dir's storesync/scale)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench [catchup|lag|proofs|stall|isolation|memory|all] [--quick] [--json FILE] [--plots DIR]")
		fmt.Fprintln(os.Stderr, "       go run ./bench scale [--quick] [--scale-sizes 1e5,1e6,1e7] [--scale-blocks 1e3,1e5] [--scale-cache DIR] [--scale-profile DIR] [--scale-record-levels N] [--scale-node-cache MiB] [--plots DIR]  (not part of all: it keeps GBs of states)")
		flag.PrintDefaults()
	}
	if scaleChild(os.Args[1:]) {
		return
	}
	if len(os.Args) == 3 && os.Args[1] == isolationChild {
		interval, err := time.ParseDuration(os.Args[2])
		if err == nil {
			err = isolationPrimary(interval)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "isolation primary:", err)
			os.Exit(1)
		}
		return
	}
	// Accept the scenario before or after the flags.
	args := os.Args[1:]
	scenario := "all"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	_ = flag.CommandLine.Parse(args)
	if flag.NArg() > 0 {
		scenario = flag.Arg(0)
	}
	useRecordLevels(scaleRecordLevels)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	res := &Results{Machine: machine(), Quick: *quick}
	run := func(name string, f func() error) {
		if scenario != "all" && scenario != name {
			return
		}
		start := time.Now()
		if err := f(); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "(%s took %s)\n", name, time.Since(start).Round(time.Second))
	}
	known := map[string]bool{"all": true, "catchup": true, "lag": true, "proofs": true, "stall": true, "memory": true, "isolation": true, "scale": true}
	if !known[scenario] {
		flag.Usage()
		os.Exit(2)
	}
	run("catchup", func() (err error) { res.Catchup, err = catchup(*quick, strings.Split(*catchupProfiles, ",")); return })
	run("lag", func() (err error) { res.Lag, err = lag(*quick); return })
	run("proofs", func() (err error) { res.Proofs, err = proofs(*quick); return })
	run("stall", func() (err error) { res.Stall, err = stallScenario(*quick); return })
	run("isolation", func() (err error) { res.Isolation, err = isolation(*quick); return })
	run("memory", func() (err error) { res.Memory, err = memory(*quick); return })
	if scenario == "scale" { // only when named: it grows and keeps GBs of states
		run("scale", func() (err error) { res.Scale, err = scale(*quick, *scaleSizes, *scaleCache, *plots); return })
	}
	if *plots != "" {
		if err := writePlots(*plots, res); err != nil {
			fmt.Fprintln(os.Stderr, "plots:", err)
			os.Exit(1)
		}
	}
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(data, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func machine() string {
	host, _ := os.Hostname()
	cpu := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s, %s", host, cpu)
}
