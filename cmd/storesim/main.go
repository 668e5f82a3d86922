// Command storesim runs the sync engine's decision cores in the simulator
// (package sim) over a grid of deployments and prints one Markdown table
// row per condition: lag, proven-tip lag, bytes fetched per useful byte,
// calls per block while caught up, readiness flips and what each upstream
// was blamed for.
//
//	go run ./cmd/storesim [--seeds N] [--blocks N] [--only SUBSTRING] [--frontier]
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"storesync/sim"
)

func main() {
	seeds := flag.Int("seeds", 1, "run every condition with this many seeds (1, 2, ...)")
	blocks := flag.Int("blocks", 400, "blocks the primary makes in each run")
	only := flag.String("only", "", "run only the conditions whose name contains this")
	frontier := flag.Bool("frontier", false, "print the proof schedule's trade-off (bytes against proven-tip lag) next to the naive loop's, instead of the grid")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./cmd/storesim [--seeds N] [--blocks N] [--only SUBSTRING] [--frontier]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *seeds < 1 || *blocks < 50 {
		fmt.Fprintln(os.Stderr, "storesim: --seeds must be at least 1 and --blocks at least 50")
		os.Exit(2)
	}
	start := time.Now()
	total := 0
	if *frontier {
		rows := sim.RunAll(sim.Frontier(1, *blocks))
		sim.WriteFrontier(os.Stdout, rows)
		return
	}
	for seed := uint64(1); seed <= uint64(*seeds); seed++ {
		var cs []sim.Condition
		for _, c := range sim.Conditions(seed, *blocks) {
			if strings.Contains(c.Name, *only) {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			fmt.Fprintf(os.Stderr, "storesim: no condition matches %q\n", *only)
			os.Exit(2)
		}
		rows := sim.RunAll(cs)
		fmt.Printf("\nseed %d\n\n", seed)
		sim.WriteTable(os.Stdout, rows)
		for _, r := range rows {
			total += r.Rep.Blocks * len(r.Rep.Followers)
		}
	}
	took := time.Since(start)
	fmt.Fprintf(os.Stderr, "\n%d simulated blocks in %s (%.0f blocks/s)\n", total, took.Round(time.Millisecond), float64(total)/took.Seconds())
}
