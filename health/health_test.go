package health

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

// step evaluates k times, a second apart, and returns the last verdict.
func step(tr *Tracker, at *time.Time, local uint64, k int) Verdict {
	var v Verdict
	for range k {
		*at = at.Add(time.Second)
		v = tr.Evaluate(*at, local)
	}
	return v
}

func TestLagBoundary(t *testing.T) {
	cfg := Config{MaxLag: 2, StaleAfter: 5 * time.Second, Fall: 1, Rise: 1}
	for _, tc := range []struct {
		lag   uint64
		ready bool
	}{{0, true}, {1, true}, {2, true}, {3, false}, {100, false}} {
		tr := NewTracker(cfg)
		tr.Observe("up", 100+tc.lag, t0)
		v := tr.Evaluate(t0, 100)
		if v.Ready != tc.ready || v.Lag != tc.lag || !v.LagKnown {
			t.Errorf("lag %d: ready=%v (lag %d known %v), want %v", tc.lag, v.Ready, v.Lag, v.LagKnown, tc.ready)
		}
	}
}

func TestUnknownLagIsNotReady(t *testing.T) {
	tr := NewTracker(Config{MaxLag: 2, StaleAfter: 5 * time.Second, Fall: 1, Rise: 1})
	if v := tr.Evaluate(t0, 100); v.Ready || v.LagKnown {
		t.Fatalf("no source at all: %+v, want not ready with lag unknown", v)
	}
	tr.Observe("up", 100, t0)
	if v := tr.Evaluate(t0.Add(time.Second), 100); !v.Ready {
		t.Fatalf("fresh source at our tip: %+v, want ready", v)
	}
	// The only source goes quiet: lag becomes unknown, never "0".
	v := tr.Evaluate(t0.Add(6*time.Second), 100)
	if v.Ready || v.LagKnown || v.Reason == "" {
		t.Fatalf("stale source: %+v, want not ready, lag unknown, with a reason", v)
	}
}

func TestChainTipIsTheHighestFreshSource(t *testing.T) {
	tr := NewTracker(Config{MaxLag: 2, StaleAfter: 5 * time.Second, Fall: 1, Rise: 1})
	tr.Observe("a", 90, t0)
	tr.Observe("b", 105, t0.Add(-10*time.Second)) // stale: ignored
	tr.Observe("c", 101, t0)
	v := tr.Evaluate(t0, 100)
	if v.ChainTip != 101 || v.From != "c" || v.Lag != 1 {
		t.Fatalf("chain tip %d from %s lag %d, want 101 from c, lag 1", v.ChainTip, v.From, v.Lag)
	}
	// A follower ahead of every source has lag 0, not a negative one.
	if v := tr.Evaluate(t0, 200); v.Lag != 0 || v.From != "local" {
		t.Fatalf("ahead of sources: lag %d from %s", v.Lag, v.From)
	}
}

func TestRiseAndFall(t *testing.T) {
	tr := NewTracker(Config{MaxLag: 2, StaleAfter: time.Hour, Fall: 3, Rise: 2})
	at := t0
	tr.Observe("up", 100, at)
	if v := step(tr, &at, 100, 1); v.Ready || !v.Passing {
		t.Fatalf("after one passing check: %+v, want still not ready", v)
	}
	if v := step(tr, &at, 100, 1); !v.Ready {
		t.Fatal("after two passing checks: want ready")
	}
	tr.Observe("up", 110, at)
	if v := step(tr, &at, 100, 2); !v.Ready || v.Passing {
		t.Fatalf("after two failing checks: %+v, want still ready", v)
	}
	// A passing check in between resets the count: no flapping.
	step(tr, &at, 109, 1)
	if v := step(tr, &at, 100, 2); !v.Ready {
		t.Fatal("two failures after a pass turned it out")
	}
	if v := step(tr, &at, 100, 1); v.Ready {
		t.Fatal("after three consecutive failing checks: want not ready")
	}
}

func TestWatermark(t *testing.T) {
	for _, tc := range []struct {
		tips []uint64
		k    int
		want uint64
		ok   bool
	}{
		{[]uint64{100, 98, 99}, 1, 100, true},
		{[]uint64{100, 98, 99}, 2, 99, true},
		{[]uint64{100, 98, 99}, 3, 98, true},
		{[]uint64{100, 98, 99}, 4, 0, false},
		{[]uint64{7, 7}, 2, 7, true},
		{nil, 1, 0, false},
	} {
		got, ok := Watermark(tc.tips, tc.k)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Watermark(%v, %d) = %d, %v; want %d, %v", tc.tips, tc.k, got, ok, tc.want, tc.ok)
		}
	}
}
