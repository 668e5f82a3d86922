package otel

import (
	"testing"
)

// gauges reads the value of every gauge without labels that m exports.
func gauges(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			if g := s.GetGauge(); g != nil && len(s.GetLabel()) == 0 {
				out[mf.GetName()] = g.GetValue()
			}
		}
	}
	return out
}

// TestReadiness: the readiness series are absent until a follower sets
// them (so that a primary, which never does, exports none and alerts on
// them select followers only), then follow each verdict.
func TestReadiness(t *testing.T) {
	names := []string{"storesync_ready", "storesync_max_lag_blocks", "storesync_storage_fault"}
	m := NewMetrics()
	for _, n := range names {
		if v, ok := gauges(t, m)[n]; ok {
			t.Fatalf("%s = %v before any verdict, want absent", n, v)
		}
	}
	for _, c := range []struct {
		ready  bool
		maxLag uint64
		fault  bool
		want   [3]float64
	}{
		{false, 2, false, [3]float64{0, 2, 0}},
		{true, 2, false, [3]float64{1, 2, 0}},
		{false, 7, true, [3]float64{0, 7, 1}},
	} {
		m.Readiness(c.ready, c.maxLag, c.fault)
		got := gauges(t, m)
		for i, n := range names {
			if v, ok := got[n]; !ok || v != c.want[i] {
				t.Errorf("Readiness(%v, %d, %v): %s = %v (present %v), want %v", c.ready, c.maxLag, c.fault, n, v, ok, c.want[i])
			}
		}
	}
	var off *Metrics
	off.Readiness(true, 2, true) // metrics off: a no-op, not a panic
}
