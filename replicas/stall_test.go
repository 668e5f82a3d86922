package replicas

import (
	"testing"
	"time"
)

type stallStep struct {
	at   time.Duration // after t0
	tip  uint64
	wm   uint64
	ok   bool
	want StallEvent
}

func runStall(t *testing.T, after time.Duration, steps []stallStep) *Stall {
	t.Helper()
	s := &Stall{After: after}
	for i, st := range steps {
		if got := s.Step(t0.Add(st.at), st.tip, st.wm, st.ok); got != st.want {
			t.Fatalf("step %d (t0+%v tip %d wm %d ok %v) = %v, want %v", i, st.at, st.tip, st.wm, st.ok, got, st.want)
		}
	}
	return s
}

func TestStallNoneWhileWatermarkMoves(t *testing.T) {
	var steps []stallStep
	for i := range 60 {
		steps = append(steps, stallStep{at: time.Duration(i) * time.Second, tip: uint64(100 + 10*i), wm: uint64(i), ok: true, want: StallNone})
	}
	runStall(t, 5*time.Second, steps)
}

func TestStallBeganOnceThenEnded(t *testing.T) {
	s := runStall(t, 5*time.Second, []stallStep{
		{0, 10, 10, true, StallNone},
		{1 * time.Second, 11, 10, true, StallNone},
		{4 * time.Second, 14, 10, true, StallNone},
		{5*time.Second - 1, 15, 10, true, StallNone}, // not yet After
		{5 * time.Second, 15, 10, true, StallBegan},  // After exactly
		{6 * time.Second, 16, 10, true, StallNone},   // once, not at every step
		{60 * time.Second, 70, 10, true, StallNone},
		{61 * time.Second, 71, 11, true, StallEnded},
		{62 * time.Second, 72, 11, true, StallNone},
		{65 * time.Second, 75, 11, true, StallNone},
		{66 * time.Second, 76, 11, true, StallBegan}, // it can stall again
	})
	if !s.Since().Equal(t0.Add(61 * time.Second)) {
		t.Fatalf("Since = %v, want t0+61s when the watermark last changed", s.Since())
	}
}

func TestStallNotWithoutNewBlocks(t *testing.T) {
	// Nothing new to back up: a still watermark is no stall, however long.
	runStall(t, 5*time.Second, []stallStep{
		{0, 10, 10, true, StallNone},
		{10 * time.Second, 10, 10, true, StallNone},
		{time.Hour, 10, 10, true, StallNone},
		{time.Hour + time.Second, 11, 10, true, StallBegan}, // the first new block is
	})
}

func TestStallWatermarkGoneWhileTipMoves(t *testing.T) {
	runStall(t, 5*time.Second, []stallStep{
		{0, 10, 10, true, StallNone},
		{1 * time.Second, 11, 0, false, StallNone}, // the last follower went away
		{3 * time.Second, 13, 0, false, StallNone},
		{6 * time.Second, 16, 0, false, StallBegan},
		{7 * time.Second, 17, 0, false, StallNone},
		{8 * time.Second, 18, 12, true, StallEnded}, // back
	})
}

func TestStallNoneFromStart(t *testing.T) {
	// Never a watermark: the first step starts the clock, then a stall.
	runStall(t, time.Second, []stallStep{
		{0, 1, 0, false, StallNone},
		{time.Second, 1, 0, false, StallNone},
		{2 * time.Second, 2, 0, false, StallBegan},
	})
}

func TestStallWatermarkGoneWhileStalled(t *testing.T) {
	// Disappearing is no recovery: no StallEnded, and no second StallBegan.
	runStall(t, 5*time.Second, []stallStep{
		{0, 10, 10, true, StallNone},
		{5 * time.Second, 15, 10, true, StallBegan},
		{6 * time.Second, 16, 0, false, StallNone},
		{20 * time.Second, 30, 0, false, StallNone},
		{21 * time.Second, 31, 20, true, StallEnded},
	})
}
