package replicas

import "time"

// Stall decides when a watermark has stopped moving while the store's own
// tip moves on: the blocks committed since are not backed up as asked, and
// an operator should hear of it once, not at every check. Pure.
type Stall struct {
	After time.Duration // how long the watermark may stand still

	started bool
	wm      uint64
	wmOK    bool
	since   time.Time // when the watermark last changed
	tip     uint64    // the store's tip then
	stalled bool
}

// StallEvent is what a Step found.
type StallEvent int

const (
	StallNone  StallEvent = iota
	StallBegan            // the watermark stood still for After while the tip moved
	StallEnded            // it moves again
)

// Step takes the store's tip and the watermark (ok false: none) at now.
func (s *Stall) Step(now time.Time, tip uint64, wm uint64, ok bool) StallEvent {
	if !s.started || wm != s.wm || ok != s.wmOK {
		was := s.stalled
		s.started, s.wm, s.wmOK, s.since, s.tip, s.stalled = true, wm, ok, now, tip, false
		if was && ok {
			return StallEnded
		}
		if !was {
			return StallNone
		}
		// It changed by disappearing: still not backed up.
		s.stalled = true
		return StallNone
	}
	if !s.stalled && now.Sub(s.since) >= s.After && tip > s.tip {
		s.stalled = true
		return StallBegan
	}
	return StallNone
}

// Since is when the watermark last changed.
func (s *Stall) Since() time.Time { return s.since }
