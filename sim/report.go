package sim

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is what one Run measured, per follower.
type Report struct {
	Followers []FollowerReport
	Blocks    int           // blocks made during the run
	Simulated time.Duration // simulated time the run covered
}

// FollowerReport is one follower's figures. Lag figures are over the
// samples taken after Settle until the last block was made.
type FollowerReport struct {
	LagP50, LagP99, LagMax float64 // blocks behind the primary
	WithinMaxLag           float64 // share of samples with lag <= max-lag
	CommitP50, CommitP99   time.Duration
	// ProofLagP99 is how long after the primary proved a block this
	// follower did (p99, over every block proven here).
	ProofLagP99 time.Duration
	// Bytes: everything fetched (misses, hedges and every copy included)
	// over the useful bytes (each block once, each proof once).
	Fetched, Useful int64
	BytesPerUseful  float64
	// LateProofs: blocks whose first copy came without their proof (it
	// was not made yet), each fetched once more for it; BytesPerFloor is
	// Fetched over that floor (the useful bytes plus those blocks').
	LateProofs    int
	BytesPerFloor float64
	// CallsPerBlock: calls to every upstream together after Settle, per
	// block made meanwhile; HealthCalls counted apart.
	CallsPerBlock float64
	Calls         []int // per upstream, whole run
	HealthCalls   int
	Flips         int // readiness changes after Settle
	Ready         float64
	Suspected     []int // per upstream: times marked suspect
	Timeouts      []int // per upstream
	Hedges        int
	Rejected      int
	Complete      bool // every block and proof applied by the end
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

func (w *world) report() *Report {
	r := &Report{Blocks: w.cfg.Blocks - w.cfg.Prefix, Simulated: w.now}
	last := len(w.commitAt) - 1
	settledBlocks := 0
	for n := 1; n <= last; n++ {
		if w.commitAt[n] >= w.cfg.Settle && w.commitAt[n] < w.end {
			settledBlocks++
		}
	}
	var useful int64
	for n := 1; n <= last; n++ {
		useful += int64(w.size[n] + w.cfg.ProofSize)
	}
	for _, f := range w.followers {
		fr := FollowerReport{Fetched: f.st.fetchedBytes, Useful: useful, Calls: f.st.callsAll,
			HealthCalls: f.st.healthCalls, Flips: f.st.flips, Suspected: f.st.suspect, Timeouts: f.st.timeouts,
			Hedges: f.st.hedges, Rejected: f.st.rejected}
		fr.Complete = f.committed == uint64(last) && f.proven == uint64(last)
		fr.BytesPerUseful = float64(fr.Fetched) / float64(useful)
		fr.LateProofs = f.st.lateProofs
		fr.BytesPerFloor = float64(fr.Fetched) / float64(useful+f.st.lateBytes)
		lag := f.lagSamples()
		fr.LagP50, fr.LagP99 = percentile(lag, 0.5), percentile(lag, 0.99)
		within := 0
		for _, l := range lag {
			fr.LagMax = max(fr.LagMax, l)
			if l <= float64(w.cfg.Health.MaxLag) {
				within++
			}
		}
		if len(lag) > 0 {
			fr.WithinMaxLag = float64(within) / float64(len(lag))
		}
		var commits, proofs []float64
		for n := 1; n <= last; n++ {
			if w.commitAt[n] >= w.cfg.Settle && f.commitAt[n] > 0 {
				commits = append(commits, float64(f.commitAt[n]-w.commitAt[n]))
			}
			if f.provenAt[n] > 0 && w.commitAt[n] >= w.cfg.Settle {
				proofs = append(proofs, float64(f.provenAt[n]-w.provenAt[n]))
			}
		}
		fr.CommitP50, fr.CommitP99 = time.Duration(percentile(commits, 0.5)), time.Duration(percentile(commits, 0.99))
		fr.ProofLagP99 = time.Duration(percentile(proofs, 0.99))
		calls := 0
		for _, c := range f.st.calls {
			calls += c
		}
		if settledBlocks > 0 {
			fr.CallsPerBlock = float64(calls) / float64(settledBlocks)
		}
		ready := 0
		for _, b := range f.readyLog {
			if b {
				ready++
			}
		}
		if len(f.readyLog) > 0 {
			fr.Ready = float64(ready) / float64(len(f.readyLog))
		}
		r.Followers = append(r.Followers, fr)
	}
	return r
}

// Row is one condition of a grid and what it gave (the first follower's
// figures, or the named one's).
type Row struct {
	Name string
	Cfg  Config
	Rep  *Report
}

// Header and Line print a grid as a Markdown table.
func WriteTable(out io.Writer, rows []Row) {
	fmt.Fprintln(out, "| condition | lag p50 | lag p99 | lag max | within max-lag | commit p99 | proof lag p99 | fetched/useful | late proofs | fetched/floor | calls/block | flips | suspect | timeouts | hedges | complete |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		for i, f := range r.Rep.Followers {
			name := r.Name
			if len(r.Rep.Followers) > 1 {
				name = fmt.Sprintf("%s (follower %d)", r.Name, i)
			}
			fmt.Fprintf(out, "| %s | %.0f | %.0f | %.0f | %.1f%% | %s | %s | %.2f | %d | %.3f | %.2f | %d | %s | %s | %d | %v |\n",
				name, f.LagP50, f.LagP99, f.LagMax, 100*f.WithinMaxLag, f.CommitP99.Round(time.Millisecond),
				f.ProofLagP99.Round(10*time.Millisecond), f.BytesPerUseful, f.LateProofs, f.BytesPerFloor, f.CallsPerBlock, f.Flips,
				ints(f.Suspected), ints(f.Timeouts), f.Hedges, f.Complete)
		}
	}
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, "/")
}
