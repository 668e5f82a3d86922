// Package health decides whether a follower is ready to serve: its lag
// behind the chain tip, where the chain tip is the highest committed tip
// among the stores it has heard from recently (its upstreams and peers),
// counting only tips backed by a header signed by the genesis producer key,
// so that a rogue store cannot make every honest follower look behind.
//
// Tracker is the decision logic, stepped by observations and evaluations
// with explicit times and tested without I/O; Poller (poller.go) feeds it
// from the network.
package health

import (
	"fmt"
	"sort"
	"time"
)

// Config sets the readiness rules.
type Config struct {
	MaxLag     uint64        // ready iff lag <= MaxLag
	StaleAfter time.Duration // a source not heard from for this long does not count
	Fall       int           // consecutive failing evaluations before turning not ready
	Rise       int           // consecutive passing evaluations before turning ready
}

// DefaultConfig: the brief's N = 2; a source is stale after 5 s; three
// failing checks turn a follower out, two passing ones bring it back.
var DefaultConfig = Config{MaxLag: 2, StaleAfter: 5 * time.Second, Fall: 3, Rise: 2}

// Verdict is one evaluation.
type Verdict struct {
	Ready     bool   // after hysteresis
	Passing   bool   // this evaluation alone
	LagKnown  bool   // some source was heard from recently
	Lag       uint64 // chain tip - local tip (when known)
	ChainTip  uint64
	From      string // the source of the chain tip ("local" when it is ours)
	Local     uint64
	Reason    string // why, in words, for /readyz and logs
	Evaluated time.Time
}

// Tracker holds the sources' tips and the hysteresis state.
// thread-compatible: the owner serialises calls.
type Tracker struct {
	cfg     Config
	sources map[string]source
	ready   bool
	streak  int // consecutive evaluations disagreeing with ready
}

type source struct {
	tip   uint64
	heard time.Time
}

// NewTracker starts not ready: a follower proves itself before it serves.
func NewTracker(cfg Config) *Tracker {
	return &Tracker{cfg: cfg, sources: map[string]source{}}
}

// Observe records that source reported a verified committed tip at time at.
func (t *Tracker) Observe(name string, tip uint64, at time.Time) {
	s := t.sources[name]
	if at.After(s.heard) {
		s.heard = at
	}
	s.tip = tip
	t.sources[name] = s
}

// Evaluate computes the verdict at now for a local committed tip.
func (t *Tracker) Evaluate(now time.Time, local uint64) Verdict {
	v := Verdict{Local: local, ChainTip: local, From: "local", Evaluated: now}
	names := make([]string, 0, len(t.sources))
	for n := range t.sources {
		names = append(names, n)
	}
	sort.Strings(names) // ties go to the same source every time
	for _, n := range names {
		s := t.sources[n]
		if now.Sub(s.heard) > t.cfg.StaleAfter {
			continue
		}
		v.LagKnown = true
		if s.tip > v.ChainTip {
			v.ChainTip, v.From = s.tip, n
		}
	}
	switch {
	case !v.LagKnown:
		v.Reason = fmt.Sprintf("lag unknown: no store heard from within %s", t.cfg.StaleAfter)
	default:
		v.Lag = v.ChainTip - local
		v.Passing = v.Lag <= t.cfg.MaxLag
		v.Reason = fmt.Sprintf("lag %d (chain tip %d from %s, local %d, max %d)", v.Lag, v.ChainTip, v.From, local, t.cfg.MaxLag)
	}
	if v.Passing == t.ready {
		t.streak = 0
	} else {
		t.streak++
		need := t.cfg.Rise
		if t.ready {
			need = t.cfg.Fall
		}
		if t.streak >= max(need, 1) {
			t.ready, t.streak = v.Passing, 0
		}
	}
	v.Ready = t.ready
	return v
}
