package actors

import (
	"fmt"
	"testing"
	"time"
)

func testApplyConfig() ApplyConfig {
	return ApplyConfig{RetryInitial: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond, GroupBlocks: 64}
}

// TestApplyCore steps an ApplyCore through scripted events; each step
// lists the effects it must have (fields left zero must stay zero).
func TestApplyCore(t *testing.T) {
	type step struct {
		at   time.Duration
		ev   any
		want ApplyReady
	}
	ok := func(k int) Applied { return Applied{Outcome: ApplyOK, Committed: k} }
	failed := Applied{Outcome: ApplyFailed}
	d := func(n uint64) Delivered { return Delivered{N: n, Bytes: 10, Block: n} }
	sized := func(n uint64, bytes int) Delivered { return Delivered{N: n, Bytes: bytes, Block: n} }
	drain := ApplyReady{Drain: true}
	group := func(first uint64, count int) ApplyReady { return ApplyReady{First: first, Count: count} }
	for _, tc := range []struct {
		name   string
		cfg    func(*ApplyConfig)
		next   uint64
		steps  []step
		after  uint64   // Next() at the end
		blocks []uint64 // Group() at the end, if set
	}{
		{"caught up: each block a group of one, at once", nil, 1, []step{
			{0, d(1), group(1, 1)},
			{0, ok(1), drain},
			{0, DrainDue{}, ApplyReady{}}, // nothing arrived during the commit
			{0, d(2), group(2, 1)},
			{0, ok(1), drain},
			{0, DrainDue{}, ApplyReady{}},
		}, 3, nil},
		{"deliveries waiting at the drain are one group", nil, 1, []step{
			{0, d(1), group(1, 1)},
			{0, d(2), ApplyReady{}}, // queued behind the group out
			{0, d(3), ApplyReady{}},
			{0, ok(1), drain},
			{0, d(4), ApplyReady{}}, // in the mailbox before the drain
			{0, DrainDue{}, group(2, 3)},
			{0, ok(3), drain},
			{0, DrainDue{}, ApplyReady{}},
			{0, d(5), group(5, 1)},
		}, 5, []uint64{5}},
		{"bounded by blocks", func(c *ApplyConfig) { c.GroupBlocks = 2 }, 1, []step{
			{0, d(1), group(1, 1)},
			{0, d(2), ApplyReady{}},
			{0, d(3), ApplyReady{}},
			{0, d(4), ApplyReady{}},
			{0, ok(1), drain},
			{0, DrainDue{}, group(2, 2)},
			{0, ok(2), drain},
			{0, DrainDue{}, group(4, 1)},
		}, 4, []uint64{4}},
		{"bounded by bytes; a larger block alone", func(c *ApplyConfig) { c.GroupBytes = 100 }, 1, []step{
			{0, sized(1, 10), group(1, 1)},
			{0, sized(2, 60), ApplyReady{}},
			{0, sized(3, 60), ApplyReady{}},
			{0, sized(4, 30), ApplyReady{}},
			{0, sized(5, 150), ApplyReady{}},
			{0, ok(1), drain},
			{0, DrainDue{}, group(2, 1)},
			{0, ok(1), drain},
			{0, DrainDue{}, group(3, 2)},
			{0, ok(2), drain},
			{0, DrainDue{}, group(5, 1)},
		}, 5, []uint64{5}},
		{"bounded by the time at the last rate", func(c *ApplyConfig) { c.GroupTime = 100 * time.Millisecond }, 1, []step{
			{0, d(1), group(1, 1)},
			{0, d(2), ApplyReady{}},
			{0, d(3), ApplyReady{}},
			{0, d(4), ApplyReady{}},
			{0, Applied{Outcome: ApplyOK, Committed: 1, Took: 40 * time.Millisecond}, drain},
			{0, DrainDue{}, group(2, 2)}, // 100 ms at 40 ms a block
		}, 2, []uint64{2, 3}},
		{"duplicate: acked", nil, 5, []step{
			{0, d(3), ApplyReady{Acked: 4}},
			{0, d(4), ApplyReady{Acked: 4}},
			{0, d(5), group(5, 1)},
			{0, d(5), ApplyReady{Acked: 4}}, // already queued
		}, 5, []uint64{5}},
		{"gap: resync from the end of the queue", nil, 5, []step{
			{0, d(7), ApplyReady{Resync: 5}},
			{0, d(5), group(5, 1)},
			{0, d(7), ApplyReady{Resync: 6}},
		}, 5, []uint64{5}},
		{"rejected in the middle: the prefix commits, the rest goes", nil, 4, []step{
			{0, d(4), group(4, 1)},
			{0, d(5), ApplyReady{}},
			{0, d(6), ApplyReady{}},
			{0, d(7), ApplyReady{}},
			{0, d(8), ApplyReady{}},
			{0, ok(1), drain},
			{0, DrainDue{}, group(5, 4)},
			{0, Applied{Outcome: ApplyRejected, Committed: 1}, ApplyReady{Rejected: true}},
			{0, d(8), ApplyReady{Resync: 6}}, // sent before the Fetcher heard
			{0, d(6), group(6, 1)},           // delivered again
		}, 6, []uint64{6}},
		{"write failure: retried with backoff, the queue grows behind it", nil, 1, []step{
			{0, d(1), group(1, 1)},
			{0, failed, ApplyReady{Retried: true, Attempts: 1, RetryAt: t0.Add(10 * time.Millisecond)}},
			{time.Millisecond, d(2), ApplyReady{}},
			{10 * time.Millisecond, RetryDue{}, group(1, 1)},
			{10 * time.Millisecond, failed, ApplyReady{Retried: true, Attempts: 2, RetryAt: t0.Add(30 * time.Millisecond)}},
			{30 * time.Millisecond, RetryDue{}, group(1, 1)},
			{30 * time.Millisecond, failed, ApplyReady{Retried: true, Attempts: 3, RetryAt: t0.Add(70 * time.Millisecond)}},
			{70 * time.Millisecond, RetryDue{}, group(1, 1)},
			{70 * time.Millisecond, failed, ApplyReady{Retried: true, Attempts: 4, RetryAt: t0.Add(110 * time.Millisecond)}}, // capped
			{80 * time.Millisecond, d(3), ApplyReady{}},
			{110 * time.Millisecond, RetryDue{}, group(1, 1)},
			{110 * time.Millisecond, ok(1), ApplyReady{Resumed: 4, Drain: true}},
			{110 * time.Millisecond, RetryDue{}, ApplyReady{}}, // a stale timer
			{110 * time.Millisecond, DrainDue{}, group(2, 2)},
			{110 * time.Millisecond, failed, ApplyReady{Retried: true, Attempts: 1, RetryAt: t0.Add(120 * time.Millisecond)}},
		}, 2, []uint64{2, 3}},
		{"groups off: each block at once, no drain", func(c *ApplyConfig) { c.GroupBlocks = 1 }, 1, []step{
			{0, d(1), group(1, 1)},
			{0, d(2), ApplyReady{}}, // queued behind the block out
			{0, ok(1), group(2, 1)},
			{0, ok(1), ApplyReady{}},
		}, 3, []uint64{}},
		{"stale drain and result: nothing", nil, 1, []step{
			{0, DrainDue{}, ApplyReady{}},
			{0, ok(1), ApplyReady{}},
		}, 1, []uint64{}},
	} {
		cfg := testApplyConfig()
		if tc.cfg != nil {
			tc.cfg(&cfg)
		}
		a := NewApplyCore(cfg, tc.next)
		for k, st := range tc.steps {
			a.Step(t0.Add(st.at), st.ev)
			if got := *a.Ready(); got != st.want {
				t.Fatalf("%s: step %d (%T %+v): effects %+v, want %+v", tc.name, k, st.ev, st.ev, got, st.want)
			}
		}
		if a.Next() != tc.after {
			t.Errorf("%s: next %d, want %d", tc.name, a.Next(), tc.after)
		}
		if tc.blocks != nil {
			var got []uint64
			for _, b := range a.Group() {
				got = append(got, b.(uint64))
			}
			if len(got) != len(tc.blocks) || (len(got) > 0 && fmt.Sprint(got) != fmt.Sprint(tc.blocks)) {
				t.Errorf("%s: group %v, want %v", tc.name, got, tc.blocks)
			}
		}
	}
}

// TestApplyCoreAttempts: Attempts counts the failed writes in a row of
// the pending group, and goes back to 0 once it is committed.
func TestApplyCoreAttempts(t *testing.T) {
	a := NewApplyCore(testApplyConfig(), 1)
	a.Step(t0, Delivered{N: 1, Block: 1})
	a.Step(t0, DrainDue{})
	a.Ready()
	for k := 1; k <= 3; k++ {
		a.Step(t0, Applied{Outcome: ApplyFailed})
		if a.Attempts() != k {
			t.Fatalf("attempts %d after %d failures", a.Attempts(), k)
		}
		a.Step(t0, RetryDue{})
	}
	a.Step(t0, Applied{Outcome: ApplyOK, Committed: 1})
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
