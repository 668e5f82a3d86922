package actors

import (
	"math/rand/v2"
	"time"
)

// Upstreams is the Fetcher's view of its upstream stores, apart from any
// I/O: which one to ask for a block, which are failing (backed off), which
// served a bad block (suspect), and which are known not to have a block yet.
// thread-compatible: owned by one actor.
type Upstreams struct {
	list         []*upstreamState
	suspectFor   time.Duration
	pollInterval time.Duration
	retryInitial time.Duration
	retryMax     time.Duration
	rng          *rand.Rand
}

type upstreamState struct {
	name         string
	tip          uint64    // highest block it served
	lacks        uint64    // lowest block it answered empty for (0: none)
	lacksAt      time.Time // when; the answer goes stale after a poll interval
	inFlight     int
	failures     int // consecutive
	downUntil    time.Time
	suspectUntil time.Time
}

// NewUpstreams tracks the named upstreams, in order of preference.
func NewUpstreams(names []string, c WindowConfig, suspectFor time.Duration) *Upstreams {
	u := &Upstreams{suspectFor: suspectFor, pollInterval: c.PollInterval, retryInitial: c.RetryInitial,
		retryMax: c.RetryMax, rng: rand.New(rand.NewPCG(c.Seed, 0xfe7c4))}
	for _, n := range names {
		u.list = append(u.list, &upstreamState{name: n})
	}
	return u
}

// Len is the number of upstreams.
func (u *Upstreams) Len() int { return len(u.list) }

// Name of upstream i.
func (u *Upstreams) Name(i int) string { return u.list[i].name }

// Tip is the highest block upstream i served.
func (u *Upstreams) Tip(i int) uint64 { return u.list[i].tip }

// lacksRecently: the upstream answered empty for n (or below) less than
// half a poll interval ago. Half: the window probes once per poll interval
// from when the previous probe was sent, and the answer arrives after that,
// so a full interval would make every other probe skip the upstream and
// double the lag once caught up.
func (s *upstreamState) lacksRecently(n uint64, now time.Time, poll time.Duration) bool {
	return s.lacks != 0 && n >= s.lacks && now.Sub(s.lacksAt) < poll/2
}

// Pick chooses the upstream to ask for block n: among those not known to
// lack it, healthy ones before backed-off ones, trusted before suspect, not
// avoid (the one that just failed or served a bad n) when another will do,
// and the least loaded, rotating by n so that fetches spread. ok is false
// when no upstream is worth asking now.
func (u *Upstreams) Pick(n uint64, now time.Time, avoid string) (int, bool) {
	best, bestScore := -1, 0
	for k := range u.list {
		i := (int(n%uint64(len(u.list))) + k) % len(u.list)
		s := u.list[i]
		if s.lacksRecently(n, now, u.pollInterval) {
			continue
		}
		// Healthy and trusted, then suspect (every block is validated
		// anyway), then backed off, which is not asked at all.
		score := s.inFlight
		if now.Before(s.suspectUntil) {
			score += 1 << 20
		}
		if now.Before(s.downUntil) {
			score += 1 << 24
		}
		if s.name == avoid {
			score += 1 << 16
		}
		if best < 0 || score < bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 || now.Before(u.list[best].downUntil) {
		return -1, false // none has n, or every one that might is backed off
	}
	u.list[best].inFlight++
	return best, true
}

// NextChance is the earliest time Pick could choose an upstream for n,
// when it cannot now: a backed-off upstream's backoff ends, or an answer
// that it lacks n goes stale. Never before now, so a retry set for it
// always arms the Fetcher's timer.
func (u *Upstreams) NextChance(n uint64, now time.Time) time.Time {
	var t time.Time
	for _, s := range u.list {
		at := now
		if s.lacksRecently(n, now, u.pollInterval) {
			at = s.lacksAt.Add(u.pollInterval / 2)
		}
		if s.downUntil.After(at) {
			at = s.downUntil
		}
		if t.IsZero() || at.Before(t) {
			t = at
		}
	}
	if t.Before(now) {
		t = now
	}
	return t
}

// Done records the end of a call to upstream i.
func (u *Upstreams) Done(i int) {
	if u.list[i].inFlight > 0 {
		u.list[i].inFlight--
	}
}

// Has records that upstream i served block n.
func (u *Upstreams) Has(i int, n uint64) {
	s := u.list[i]
	s.tip = max(s.tip, n)
	s.failures = 0
	s.downUntil = time.Time{}
	if s.lacks != 0 && n >= s.lacks {
		s.lacks = 0
	}
}

// Lacks records that upstream i answered empty for block n.
func (u *Upstreams) Lacks(i int, n uint64, now time.Time) {
	s := u.list[i]
	s.failures = 0
	if s.lacks == 0 || n < s.lacks || now.Sub(s.lacksAt) >= u.pollInterval/2 {
		s.lacks, s.lacksAt = n, now
	}
}

// AllLack reports whether every upstream recently answered empty for n (or
// below it): n is past the tip of them all.
func (u *Upstreams) AllLack(n uint64, now time.Time) bool {
	for _, s := range u.list {
		if !s.lacksRecently(n, now, u.pollInterval) {
			return false
		}
	}
	return true
}

// Failed records a failed call to upstream i (error or timeout) and backs
// it off; it returns how long. A failure while it is already backed off
// does not lengthen the backoff: calls in flight together fail together
// (one dropped connection fails a whole window of them), and counting each
// took a single drop straight to RetryMax, idling the follower for seconds
// after a link that was back at once.
func (u *Upstreams) Failed(i int, now time.Time) time.Duration {
	s := u.list[i]
	if now.Before(s.downUntil) {
		return s.downUntil.Sub(now)
	}
	s.failures++
	d := Backoff(s.failures, u.retryInitial, u.retryMax, u.rng)
	s.downUntil = now.Add(d)
	return d
}

// Reconnected records that upstream i's connection is back: its backoff
// ends now. It reports whether the upstream had failed since it last
// answered (a first connection, or one after an idle spell, changes
// nothing). Suspicion stays: a reconnect says nothing about what it serves.
func (u *Upstreams) Reconnected(i int) bool {
	s := u.list[i]
	failed := s.failures > 0
	s.failures = 0
	s.downUntil = time.Time{}
	return failed
}

// Suspect marks the named upstream as having served a block that failed
// validation; it is avoided for a while.
func (u *Upstreams) Suspect(name string, now time.Time) {
	for _, s := range u.list {
		if s.name == name {
			s.suspectUntil = now.Add(u.suspectFor)
		}
	}
}
