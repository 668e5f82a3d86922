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
	staged := func(k int) Staged { return Staged{Outcome: ApplyOK, Accepted: k} }
	committed := func(id uint64) Applied { return Applied{ID: id, Outcome: ApplyOK} }
	d := func(n uint64) Delivered { return Delivered{N: n, Bytes: 10, Block: n} }
	sized := func(n uint64, bytes int) Delivered { return Delivered{N: n, Bytes: bytes, Block: n} }
	drain := ApplyReady{Drain: true}
	group := func(first uint64, count int, id uint64) ApplyReady {
		return ApplyReady{First: first, Count: count, ID: id}
	}
	retried := func(attempts int, at time.Duration) ApplyReady {
		return ApplyReady{Retried: true, Attempts: attempts, RetryAt: t0.Add(at)}
	}
	for _, tc := range []struct {
		name   string
		cfg    func(*ApplyConfig)
		next   uint64
		steps  []step
		after  uint64   // Next() at the end
		blocks []uint64 // Group() at the end, if set
	}{
		{"caught up: each block a group of one, at once", nil, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, staged(1), drain},
			{0, DrainDue{}, ApplyReady{}}, // nothing arrived during the stage
			{0, committed(1), ApplyReady{}},
			{0, d(2), group(2, 1, 2)},
			{0, staged(1), drain},
			{0, DrainDue{}, ApplyReady{}},
			{0, committed(2), ApplyReady{}},
		}, 3, nil},
		{"a full group is staged while one commits, no further", func(c *ApplyConfig) { c.GroupBlocks = 2 }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, staged(1), drain},
			{0, d(2), ApplyReady{}}, // in the mailbox before the drain
			{0, d(3), ApplyReady{}},
			{0, DrainDue{}, group(2, 2, 2)}, // on the state group 1 leaves
			{0, staged(2), drain},
			{0, d(4), ApplyReady{}},
			{0, DrainDue{}, ApplyReady{}},   // one committing, one waiting
			{0, committed(1), ApplyReady{}}, // block 4 alone is no full group
			{0, d(5), group(4, 2, 3)},
			{0, staged(2), drain},
			{0, committed(2), ApplyReady{}}, // a drain is due
			{0, DrainDue{}, ApplyReady{}},
			{0, committed(3), ApplyReady{}},
		}, 6, []uint64{}},
		{"a part group waits for the commit under way", nil, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, staged(1), drain},
			{0, d(2), ApplyReady{}},
			{0, DrainDue{}, ApplyReady{}},
			{0, d(3), ApplyReady{}},
			{0, committed(1), group(2, 2, 2)},
		}, 2, []uint64{2, 3}},
		{"no overlap: even a full group once the one before committed", func(c *ApplyConfig) { c.NoOverlap, c.GroupBlocks = true, 2 }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, staged(1), drain},
			{0, d(2), ApplyReady{}},
			{0, d(3), ApplyReady{}},
			{0, DrainDue{}, ApplyReady{}}, // full, yet it waits
			{0, committed(1), group(2, 2, 2)},
		}, 2, []uint64{2, 3}},
		{"behind a barrier: the next group once it committed", func(c *ApplyConfig) { c.GroupBlocks = 1 }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, Staged{Outcome: ApplyOK, Accepted: 1, Barrier: true}, ApplyReady{}},
			{0, d(2), ApplyReady{}}, // a full group, but behind a barrier
			{0, committed(1), group(2, 1, 2)},
		}, 2, []uint64{2}},
		{"bounded by blocks", func(c *ApplyConfig) { c.GroupBlocks = 2 }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, d(2), ApplyReady{}}, // a group is out
			{0, d(3), ApplyReady{}},
			{0, d(4), ApplyReady{}},
			{0, staged(1), drain},
			{0, DrainDue{}, group(2, 2, 2)},
			{0, staged(2), drain},
			{0, DrainDue{}, ApplyReady{}},
			{0, committed(1), ApplyReady{}}, // block 4 alone is no full group
			{0, committed(2), group(4, 1, 3)},
		}, 4, []uint64{4}},
		{"bounded by bytes; a larger block alone", func(c *ApplyConfig) { c.GroupBytes = 100 }, 1, []step{
			{0, sized(1, 10), group(1, 1, 1)},
			{0, sized(2, 60), ApplyReady{}},
			{0, sized(3, 60), ApplyReady{}},
			{0, sized(4, 30), ApplyReady{}},
			{0, sized(5, 150), ApplyReady{}},
			{0, staged(1), drain},
			{0, DrainDue{}, group(2, 1, 2)},
			{0, staged(1), drain},
			{0, DrainDue{}, ApplyReady{}},
			{0, committed(1), group(3, 2, 3)},
			{0, staged(2), drain},
			{0, committed(2), ApplyReady{}},
			{0, DrainDue{}, ApplyReady{}}, // block 5 alone is no full group
			{0, committed(3), group(5, 1, 4)},
		}, 5, []uint64{5}},
		{"bounded by the time at the last rate", func(c *ApplyConfig) { c.GroupTime = 100 * time.Millisecond }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, Staged{Outcome: ApplyOK, Accepted: 1, Took: 30 * time.Millisecond}, drain},
			{0, Applied{ID: 1, Outcome: ApplyOK, Took: 10 * time.Millisecond}, ApplyReady{}},
			{0, d(2), ApplyReady{}},
			{0, d(3), ApplyReady{}},
			{0, d(4), ApplyReady{}},
			{0, DrainDue{}, group(2, 2, 2)}, // 100 ms at 40 ms a block
		}, 2, []uint64{2, 3}},
		{"duplicate: acked", nil, 5, []step{
			{0, d(3), ApplyReady{Acked: 4}},
			{0, d(4), ApplyReady{Acked: 4}},
			{0, d(5), group(5, 1, 1)},
			{0, d(5), ApplyReady{Acked: 4}}, // already queued
		}, 5, []uint64{5}},
		{"gap: resync from the end of the queue", nil, 5, []step{
			{0, d(7), ApplyReady{Resync: 5}},
			{0, d(5), group(5, 1, 1)},
			{0, d(7), ApplyReady{Resync: 6}},
		}, 5, []uint64{5}},
		{"rejected in the middle: the prefix commits, the rest goes", nil, 4, []step{
			{0, d(4), group(4, 1, 1)},
			{0, d(5), ApplyReady{}},
			{0, d(6), ApplyReady{}},
			{0, d(7), ApplyReady{}},
			{0, d(8), ApplyReady{}},
			{0, staged(1), drain},
			{0, DrainDue{}, ApplyReady{}},
			{0, committed(1), group(5, 4, 2)},
			{0, Staged{Outcome: ApplyRejected, Accepted: 1}, ApplyReady{Rejected: true, Drain: true}},
			{0, d(8), ApplyReady{Resync: 6}}, // sent before the Fetcher heard
			{0, DrainDue{}, ApplyReady{}},
			{0, d(6), ApplyReady{}}, // delivered again, after block 5 commits
			{0, committed(2), group(6, 1, 3)},
		}, 6, []uint64{6}},
		{"commit failure: the group staged on it goes too; retried with backoff", func(c *ApplyConfig) { c.GroupBlocks = 1 }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, staged(1), ApplyReady{}},
			{0, d(2), group(2, 1, 2)}, // a full group: staged while 1 commits
			{0, staged(1), ApplyReady{}},
			{0, Applied{ID: 1, Outcome: ApplyFailed}, retried(1, 10*time.Millisecond)},
			{0, Applied{ID: 2, Outcome: ApplyStale}, ApplyReady{}}, // dropped with it
			{time.Millisecond, d(3), ApplyReady{}},
			{10 * time.Millisecond, RetryDue{}, group(1, 1, 3)},
			{10 * time.Millisecond, staged(1), group(2, 1, 4)},
			{10 * time.Millisecond, Applied{ID: 3, Outcome: ApplyFailed}, retried(2, 30*time.Millisecond)},
			{30 * time.Millisecond, RetryDue{}, group(1, 1, 5)},
			{30 * time.Millisecond, staged(1), group(2, 1, 6)},
			{30 * time.Millisecond, staged(1), ApplyReady{}},
			{30 * time.Millisecond, committed(5), ApplyReady{Resumed: 2, First: 3, Count: 1, ID: 7}},
			{30 * time.Millisecond, RetryDue{}, ApplyReady{}}, // a stale timer
		}, 2, []uint64{3}},
		{"stage failure: retried with backoff, the queue grows behind it", nil, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, Staged{Outcome: ApplyFailed}, retried(1, 10*time.Millisecond)},
			{time.Millisecond, d(2), ApplyReady{}},
			{10 * time.Millisecond, RetryDue{}, group(1, 2, 2)},
			{10 * time.Millisecond, Staged{Outcome: ApplyFailed}, retried(2, 30*time.Millisecond)},
			{30 * time.Millisecond, RetryDue{}, group(1, 2, 3)},
			{30 * time.Millisecond, Staged{Outcome: ApplyFailed}, retried(3, 70*time.Millisecond)},
			{70 * time.Millisecond, RetryDue{}, group(1, 2, 4)},
			{70 * time.Millisecond, Staged{Outcome: ApplyFailed}, retried(4, 110*time.Millisecond)}, // capped
			{110 * time.Millisecond, RetryDue{}, group(1, 2, 5)},
			{110 * time.Millisecond, staged(2), drain},
			{110 * time.Millisecond, committed(5), ApplyReady{Resumed: 4}},
		}, 3, nil},
		{"stale commit: staged again at once", nil, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, staged(1), drain},
			{0, DrainDue{}, ApplyReady{}},
			{0, Applied{ID: 1, Outcome: ApplyStale}, group(1, 1, 2)},
		}, 1, []uint64{1}},
		{"stale commit: the group staged on it goes too", func(c *ApplyConfig) { c.GroupBlocks = 1 }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, staged(1), ApplyReady{}},
			{0, d(2), group(2, 1, 2)},
			{0, staged(1), ApplyReady{}},
			{0, Applied{ID: 1, Outcome: ApplyStale}, group(1, 1, 3)},
			{0, Applied{ID: 2, Outcome: ApplyStale}, ApplyReady{}}, // dropped with group 1
		}, 1, []uint64{1}},
		{"groups off: each block at once, no drain", func(c *ApplyConfig) { c.GroupBlocks = 1 }, 1, []step{
			{0, d(1), group(1, 1, 1)},
			{0, d(2), ApplyReady{}}, // queued behind the block out
			{0, staged(1), group(2, 1, 2)},
			{0, d(3), ApplyReady{}},
			{0, staged(1), ApplyReady{}}, // one committing, one waiting
			{0, committed(1), group(3, 1, 3)},
			{0, committed(2), ApplyReady{}},
		}, 3, []uint64{3}},
		{"stale drain and results: nothing", nil, 1, []step{
			{0, DrainDue{}, ApplyReady{}},
			{0, staged(1), ApplyReady{}},
			{0, committed(7), ApplyReady{}},
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

// TestApplyCoreAttempts: Attempts counts the failed writes in a row, of a
// stage or of a commit, and goes back to 0 once a group is committed.
func TestApplyCoreAttempts(t *testing.T) {
	a := NewApplyCore(testApplyConfig(), 1)
	a.Step(t0, Delivered{N: 1, Block: 1})
	for k := 1; k <= 4; k++ {
		id := a.Ready().ID
		if k%2 == 1 {
			a.Step(t0, Staged{Outcome: ApplyFailed})
		} else {
			a.Step(t0, Staged{Outcome: ApplyOK, Accepted: 1})
			a.Step(t0, Applied{ID: id, Outcome: ApplyFailed})
		}
		if a.Attempts() != k {
			t.Fatalf("attempts %d after %d failures", a.Attempts(), k)
		}
		a.Ready()
		a.Step(t0, RetryDue{})
	}
	id := a.Ready().ID
	a.Step(t0, Staged{Outcome: ApplyOK, Accepted: 1})
	a.Step(t0, Applied{ID: id, Outcome: ApplyOK})
	if a.Attempts() != 0 || a.Next() != 2 {
		t.Fatalf("attempts %d, next %d after the commit", a.Attempts(), a.Next())
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
