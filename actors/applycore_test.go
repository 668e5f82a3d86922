package actors

import (
	"testing"
	"time"
)

func testApplyConfig() ApplyConfig {
	return ApplyConfig{RetryInitial: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond}
}

// TestApplyCore steps an ApplyCore through scripted events; each step
// lists the effects it must have (fields left zero must stay zero).
func TestApplyCore(t *testing.T) {
	type step struct {
		at   time.Duration
		ev   any
		want ApplyReady
	}
	ok := func(n uint64) Applied { return Applied{N: n, Outcome: ApplyOK} }
	failed := func(n uint64) Applied { return Applied{N: n, Outcome: ApplyFailed, Block: n} }
	for _, tc := range []struct {
		name  string
		next  uint64
		steps []step
		after uint64 // Next() at the end
	}{
		{"in order", 1, []step{
			{0, Delivered{N: 1, Block: uint64(1)}, ApplyReady{Apply: uint64(1)}},
			{0, ok(1), ApplyReady{}},
			{0, Delivered{N: 2, Block: uint64(2)}, ApplyReady{Apply: uint64(2)}},
			{0, ok(2), ApplyReady{}},
		}, 3},
		{"duplicate: acked", 5, []step{
			{0, Delivered{N: 3, Block: uint64(3)}, ApplyReady{Acked: 4}},
			{0, Delivered{N: 4, Block: uint64(4)}, ApplyReady{Acked: 4}},
		}, 5},
		{"gap: resync", 5, []step{
			{0, Delivered{N: 7, Block: uint64(7)}, ApplyReady{Resync: 5}},
			{0, Delivered{N: 5, Block: uint64(5)}, ApplyReady{Apply: uint64(5)}},
		}, 5},
		{"rejected: told, not applied", 5, []step{
			{0, Delivered{N: 5, Block: uint64(5)}, ApplyReady{Apply: uint64(5)}},
			{0, Applied{N: 5, Outcome: ApplyRejected}, ApplyReady{Rejected: true}},
			{0, Delivered{N: 5, Block: uint64(50)}, ApplyReady{Apply: uint64(50)}},
		}, 5},
		{"write failure: retried with backoff", 1, []step{
			{0, Delivered{N: 1, Block: uint64(1)}, ApplyReady{Apply: uint64(1)}},
			{0, failed(1), ApplyReady{Retried: true, Attempts: 1, RetryAt: t0.Add(10 * time.Millisecond)}},
			{10 * time.Millisecond, RetryDue{}, ApplyReady{Apply: uint64(1)}},
			{10 * time.Millisecond, failed(1), ApplyReady{Retried: true, Attempts: 2, RetryAt: t0.Add(30 * time.Millisecond)}},
			{30 * time.Millisecond, RetryDue{}, ApplyReady{Apply: uint64(1)}},
			{30 * time.Millisecond, failed(1), ApplyReady{Retried: true, Attempts: 3, RetryAt: t0.Add(70 * time.Millisecond)}},
			{70 * time.Millisecond, RetryDue{}, ApplyReady{Apply: uint64(1)}},
			{70 * time.Millisecond, failed(1), ApplyReady{Retried: true, Attempts: 4, RetryAt: t0.Add(110 * time.Millisecond)}}, // capped
			{110 * time.Millisecond, RetryDue{}, ApplyReady{Apply: uint64(1)}},
			{110 * time.Millisecond, ok(1), ApplyReady{Resumed: 4}},
			{110 * time.Millisecond, RetryDue{}, ApplyReady{}}, // a stale timer
			{110 * time.Millisecond, Delivered{N: 2, Block: uint64(2)}, ApplyReady{Apply: uint64(2)}},
			{110 * time.Millisecond, failed(2), ApplyReady{Retried: true, Attempts: 1, RetryAt: t0.Add(120 * time.Millisecond)}},
		}, 2},
		{"drop while pending: resync after the commit", 1, []step{
			{0, Delivered{N: 1, Block: uint64(1)}, ApplyReady{Apply: uint64(1)}},
			{0, failed(1), ApplyReady{Retried: true, Attempts: 1, RetryAt: t0.Add(10 * time.Millisecond)}},
			{time.Millisecond, Delivered{N: 2, Block: uint64(2)}, ApplyReady{}},
			{2 * time.Millisecond, Delivered{N: 3, Block: uint64(3)}, ApplyReady{}},
			{10 * time.Millisecond, RetryDue{}, ApplyReady{Apply: uint64(1)}},
			{10 * time.Millisecond, ok(1), ApplyReady{Resumed: 1, Resync: 2}},
			{10 * time.Millisecond, Delivered{N: 2, Block: uint64(2)}, ApplyReady{Apply: uint64(2)}},
			{10 * time.Millisecond, ok(2), ApplyReady{}},
		}, 3},
		{"duplicate while pending: acked", 3, []step{
			{0, Delivered{N: 3, Block: uint64(3)}, ApplyReady{Apply: uint64(3)}},
			{0, failed(3), ApplyReady{Retried: true, Attempts: 1, RetryAt: t0.Add(10 * time.Millisecond)}},
			{time.Millisecond, Delivered{N: 2, Block: uint64(2)}, ApplyReady{Acked: 2}},
			{10 * time.Millisecond, RetryDue{}, ApplyReady{Apply: uint64(3)}},
			{10 * time.Millisecond, ok(3), ApplyReady{Resumed: 1}},
		}, 4},
	} {
		a := NewApplyCore(testApplyConfig(), tc.next)
		for k, st := range tc.steps {
			a.Step(t0.Add(st.at), st.ev)
			if got := *a.Ready(); got != st.want {
				t.Fatalf("%s: step %d (%T %+v): effects %+v, want %+v", tc.name, k, st.ev, st.ev, got, st.want)
			}
		}
		if a.Next() != tc.after {
			t.Errorf("%s: next %d, want %d", tc.name, a.Next(), tc.after)
		}
	}
}

// TestApplyCoreAttempts: Attempts counts the failed writes in a row of
// the pending block, and goes back to 0 once it is committed.
func TestApplyCoreAttempts(t *testing.T) {
	a := NewApplyCore(testApplyConfig(), 1)
	a.Step(t0, Delivered{N: 1, Block: 1})
	a.Ready()
	for k := 1; k <= 3; k++ {
		a.Step(t0, Applied{N: 1, Outcome: ApplyFailed, Block: 1})
		if a.Attempts() != k {
			t.Fatalf("attempts %d after %d failures", a.Attempts(), k)
		}
		a.Step(t0, RetryDue{})
	}
	a.Step(t0, Applied{N: 1, Outcome: ApplyOK})
	if a.Attempts() != 0 {
		t.Fatalf("attempts %d after the commit", a.Attempts())
	}
}

// TestRestartPolicy: restarts back off exponentially from Initial, capped
// at Max; past Limit failures within the window, the Supervisor gives up.
func TestRestartPolicy(t *testing.T) {
	p := RestartPolicy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Limit: 4, Window: time.Minute}
	for _, tc := range []struct {
		failures int
		delay    time.Duration
		giveUp   bool
	}{
		{1, 10 * time.Millisecond, false},
		{2, 20 * time.Millisecond, false},
		{3, 40 * time.Millisecond, false},
		{4, 50 * time.Millisecond, false},
		{5, 0, true},
		{50, 0, true},
	} {
		d, g := p.Decide(tc.failures)
		if d != tc.delay || g != tc.giveUp {
			t.Errorf("failures %d: got %s %v, want %s %v", tc.failures, d, g, tc.delay, tc.giveUp)
		}
	}
	if d, g := DefaultRestartPolicy.Decide(1); d != DefaultRestartPolicy.Initial || g {
		t.Errorf("default policy, first failure: %s %v", d, g)
	}
}
