package sim

import (
	"testing"
	"time"
)

// BenchmarkRun: simulated blocks per CPU second, one follower caught up
// with proofs 30 s behind 1 s blocks (reported as blocks/s).
func BenchmarkRun(b *testing.B) {
	blocks := 0
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r := Run(Base(uint64(i), 1000, time.Second, 30*time.Second))
		blocks += r.Blocks
	}
	b.ReportMetric(float64(blocks)/time.Since(start).Seconds(), "blocks/s")
}
