package actors

import (
	"math/rand/v2"
	"time"
)

// Tunables of the per-upstream model, each with the reason for its value.
const (
	// hedgeFloor is the shortest a call waits before a second upstream is
	// asked for the same block: below it the second call costs bytes for
	// nothing (scheduling noise on a loaded machine is a few milliseconds).
	hedgeFloor = 25 * time.Millisecond
	// hedgeVarFactor: a call is late once it runs past srtt + 4 x rttvar,
	// TCP's retransmission timeout (RFC 6298). Honest answers rarely do, so
	// hedges cost little; a stalled one is seen within a few round trips,
	// not a whole fetch timeout.
	hedgeVarFactor = 4
	// slowFactor: an upstream whose smoothed RTT is this many times the
	// best one's is asked only when the faster ones are busy (a 10x slower
	// upstream would otherwise hold half the window).
	slowFactor = 4
	// slowFor: an upstream is held slow on an estimate at most this old.
	// A slow one is seldom asked, so its estimate is seldom renewed; without
	// an end it would stay exiled after it got fast again.
	slowFor = 10 * time.Second
	// An upstream that another upstream beat to an answer lateMin times
	// within lateWindow, and for at least one call in lateShare of those it
	// answered meanwhile, is marked suspect: it stalls or trickles. Honest
	// jitter loses a hedge now and then, not one call in ten.
	lateMin    = 3
	lateWindow = time.Minute
	lateShare  = 10
)

// Book is the one owner of every upstream's standing, apart from any I/O:
// its latency estimate, its backoff after failures, its suspicion after bad
// answers, the blocks and proofs it is known to hold or lack, and the calls
// it has in flight with the limit on them. Block fetches and proof asks
// both choose an upstream here and report the outcome here, so what one
// kind of call learns (a bad proof, a stall) steers the other. Owned by the
// FetchCore; the status page reads the Notes it publishes.
// thread-compatible.
type Book struct {
	ups []*standing
	cfg BookConfig
	rng *rand.Rand
	// version counts changes an operator can see (Notes), so the shell
	// publishes a new snapshot only when something changed.
	version uint64
}

// BookConfig sets the timing of a Book.
type BookConfig struct {
	PollInterval time.Duration
	RetryInitial time.Duration
	RetryMax     time.Duration
	SuspectFor   time.Duration
	FetchTimeout time.Duration
	MaxInFlight  int // per upstream: the fetch window
	Seed         uint64
}

type standing struct {
	name     string
	tip      uint64    // highest block it served or was seen (signed) to hold
	proofTip uint64    // highest block whose proof it served
	lacks    uint64    // lowest block it answered empty for (0: none)
	lacksAt  time.Time // when; the answer goes stale after half a poll interval

	inFlight int
	// limit bounds this upstream's calls in flight, as TCP bounds a
	// connection's segments with its congestion window: calls in flight
	// share its link, and on one too slow to carry them all within the
	// fetch timeout every call would time out, be retried together and
	// time out again, for ever. A timeout cuts the limit to 1 and a call
	// that took over half the timeout halves it (threshold: half the calls
	// that were in flight); below the threshold each block served adds 1,
	// above it 1 per limit's worth. Calls launched before a cut do not cut
	// again. Per upstream: a slow link to one must not narrow what a fast
	// one is asked.
	limit, threshold, grown int
	cutAt                   time.Time

	failures  int // consecutive
	downUntil time.Time

	suspectUntil time.Time
	suspectWhy   string
	problem      string // last failed call or bad answer, until it next answers well

	srtt, rttvar time.Duration // smoothed RTT of its answers and its variation
	rttSamples   int
	sampledAt    time.Time // when the estimate last moved

	lateSince          time.Time // start of the window counting hedges it lost
	lateLost, answered int       // hedges lost, answers given, since lateSince

	holdMax time.Duration // its longest hold of a call, from its answers (0: it does not hold)
}

// NewBook tracks the named upstreams.
func NewBook(names []string, c BookConfig) *Book {
	b := &Book{cfg: c, rng: rand.New(rand.NewPCG(c.Seed, 0xb00c))}
	if b.cfg.MaxInFlight < 1 {
		b.cfg.MaxInFlight = 1
	}
	for _, n := range names {
		b.ups = append(b.ups, &standing{name: n, limit: b.cfg.MaxInFlight, threshold: b.cfg.MaxInFlight})
	}
	return b
}

// Len is the number of upstreams.
func (b *Book) Len() int { return len(b.ups) }

// Name of upstream i.
func (b *Book) Name(i int) string { return b.ups[i].name }

// Tip is the highest block upstream i is known to hold.
func (b *Book) Tip(i int) uint64 { return b.ups[i].tip }

// Limit is how many calls the upstreams together allow in flight now.
func (b *Book) Limit() int {
	n := 0
	for _, s := range b.ups {
		n += s.limit
	}
	return n
}

// lacksRecently: the upstream answered empty for n (or below) less than
// half a poll interval ago. Half: the window probes once per poll interval
// from when the previous probe was sent, and the answer arrives after that,
// so a full interval would make every other probe skip the upstream.
func (s *standing) lacksRecently(n uint64, now time.Time, poll time.Duration) bool {
	return s.lacks != 0 && n >= s.lacks && now.Sub(s.lacksAt) < poll/2
}

// bestRTT is the lowest smoothed RTT among upstreams with samples (0: none).
func (b *Book) bestRTT() time.Duration {
	var best time.Duration
	for _, s := range b.ups {
		if s.rttSamples > 0 && (best == 0 || s.srtt < best) {
			best = s.srtt
		}
	}
	return best
}

// RTT is upstream i's smoothed round trip (0: not measured yet).
func (b *Book) RTT(i int) time.Duration { return b.ups[i].srtt }

// Pick chooses the upstream to ask for block n (a fetch, or a proof ask):
// among those not known to lack it and with room under their limit,
// healthy before suspect before avoid (the one that just failed or served a
// bad n, or holds the call being hedged), fast before slow, least loaded,
// rotating by n so that calls spread. A backed-off upstream is not asked.
// ok is false when none is worth asking now.
func (b *Book) Pick(n uint64, now time.Time, avoid int) (int, bool) {
	return b.pick(n, now, avoid, false, false)
}

// PickHolding is Pick for a call that would rather wait at an upstream
// that holds calls (a proof not known to exist yet): such an upstream
// answers when the proof is applied, any other "not yet", again and again.
// It comes before a slow one, after one to avoid or suspect.
func (b *Book) PickHolding(n uint64, now time.Time, avoid int) (int, bool) {
	return b.pick(n, now, avoid, true, false)
}

// PickOther is Pick for a hedge: any upstream but `not` (the one whose
// call is late), a suspect one included. Suspicion orders who is asked
// first; a hedge has only the others to ask, and an answer it brings is
// checked like any.
func (b *Book) PickOther(n uint64, now time.Time, not int) (int, bool) {
	return b.pick(n, now, not, false, true)
}

// pick: avoid is asked only when no other can be (never, if never).
func (b *Book) pick(n uint64, now time.Time, avoid int, holding, never bool) (int, bool) {
	best, bestScore := -1, int64(0)
	fast := b.bestRTT()
	for k := range b.ups {
		i := (int(n%uint64(len(b.ups))) + k) % len(b.ups)
		s := b.ups[i]
		if s.lacksRecently(n, now, b.cfg.PollInterval) || s.inFlight >= s.limit || now.Before(s.downUntil) {
			continue
		}
		if i == avoid && never {
			continue
		}
		score := int64(s.inFlight)
		if fast > 0 && s.rttSamples > 0 && s.srtt > slowFactor*fast && now.Sub(s.sampledAt) < slowFor {
			score += 1 << 12
		}
		if holding && s.holdMax == 0 {
			score += 1 << 14
		}
		if i == avoid {
			score += 1 << 16
		}
		if now.Before(s.suspectUntil) {
			score += 1 << 20
		}
		if best < 0 || score < bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return -1, false
	}
	b.ups[best].inFlight++
	return best, true
}

// PickProbe chooses the upstream to ask for block n past the known tip:
// the one most likely to have it first (highest tip, then fastest), so a
// caught-up follower asks one upstream per probe, not all of them.
func (b *Book) PickProbe(n uint64, now time.Time) (int, bool) {
	best := -1
	for i, s := range b.ups {
		if s.lacksRecently(n, now, b.cfg.PollInterval) || s.inFlight >= s.limit || now.Before(s.downUntil) {
			continue
		}
		if best < 0 || b.better(s, b.ups[best], now) {
			best = i
		}
	}
	if best < 0 {
		return -1, false
	}
	b.ups[best].inFlight++
	return best, true
}

// better: s is a better probe target than t.
func (b *Book) better(s, t *standing, now time.Time) bool {
	if ss, ts := now.Before(s.suspectUntil), now.Before(t.suspectUntil); ss != ts {
		return ts
	}
	// One that holds calls first: a held probe brings the block at its
	// commit, a polled one a poll later. Before the tips: those of the
	// upstreams asked past the tip say only which one was asked last, so
	// one polled now and then would keep the lead for good. (One that
	// holds but lags is found out by the hedge once the block is known.)
	if sh, th := s.holdMax > 0, t.holdMax > 0; sh != th {
		return sh
	}
	if s.tip != t.tip {
		return s.tip > t.tip
	}
	if s.rttSamples == 0 || t.rttSamples == 0 {
		return s.rttSamples == 0 && t.rttSamples > 0
	}
	if s.srtt != t.srtt {
		return s.srtt < t.srtt
	}
	return s.inFlight < t.inFlight
}

// NextChance is the earliest time Pick could choose an upstream for n when
// it cannot now: a backoff ends, or an answer that it lacks n goes stale.
// Never before now. Upstreams at their limit free a slot when a call ends,
// which steps the core anyway.
func (b *Book) NextChance(n uint64, now time.Time) time.Time {
	return b.nextChance(n, now, -1)
}

// NextChanceOther is NextChance for PickOther: any upstream but not.
func (b *Book) NextChanceOther(n uint64, now time.Time, not int) time.Time {
	return b.nextChance(n, now, not)
}

func (b *Book) nextChance(n uint64, now time.Time, not int) time.Time {
	var t time.Time
	for i, s := range b.ups {
		if i == not {
			continue
		}
		at := now
		if s.lacksRecently(n, now, b.cfg.PollInterval) {
			at = s.lacksAt.Add(b.cfg.PollInterval / 2)
		}
		if s.downUntil.After(at) {
			at = s.downUntil
		}
		if t.IsZero() || at.Before(t) {
			t = at
		}
	}
	return maxTime(t, now)
}

// AllLack reports whether every upstream recently answered empty for n or
// below, or is backed off: nobody is worth asking for n now.
func (b *Book) AllLack(n uint64, now time.Time) bool {
	for _, s := range b.ups {
		if !s.lacksRecently(n, now, b.cfg.PollInterval) {
			return false
		}
	}
	return true
}

// Reachable reports whether an upstream other than except may be asked for
// n now: not backed off, not known to lack it.
func (b *Book) Reachable(n uint64, now time.Time, except int) bool {
	for j, s := range b.ups {
		if j != except && !now.Before(s.downUntil) && !s.lacksRecently(n, now, b.cfg.PollInterval) {
			return true
		}
	}
	return false
}

// SomeoneHas reports whether an upstream other than i is known to hold n.
func (b *Book) SomeoneHas(n uint64, except int) bool {
	for j, s := range b.ups {
		if j != except && s.tip >= n {
			return true
		}
	}
	return false
}

// Done records the end of a call to upstream i, answered or not.
func (b *Book) Done(i int) {
	if b.ups[i].inFlight > 0 {
		b.ups[i].inFlight--
	}
}

// Answered records an answer of upstream i that took `took`: it is
// reachable (its backoff ends) and the RTT estimate moves (RFC 6298's
// smoothing); a negative took (a held call, whose time is its wait)
// leaves the estimate. What it answered is judged apart (Recovered,
// Problem).
func (b *Book) Answered(i int, took time.Duration, now time.Time) {
	s := b.ups[i]
	if s.failures > 0 || !s.downUntil.IsZero() {
		s.failures, s.downUntil = 0, time.Time{}
		b.version++
	}
	s.answered++
	if took >= 0 {
		b.sample(s, took)
		s.sampledAt = now
	}
}

// HoldMax is the longest upstream i holds a call, as its last answer said
// (0: it does not hold, or has not answered yet).
func (b *Book) HoldMax(i int) time.Duration { return b.ups[i].holdMax }

// AnyHolds reports whether some upstream holds calls.
func (b *Book) AnyHolds() bool {
	for _, s := range b.ups {
		if s.holdMax > 0 {
			return true
		}
	}
	return false
}

// SetHoldMax records what an answer of upstream i said of holding: an
// upstream replaced by an older store, or put behind a proxy that strips
// metadata, stops being asked to hold at its next answer.
func (b *Book) SetHoldMax(i int, d time.Duration) { b.ups[i].holdMax = max(d, 0) }

// LostHedge records that a call to upstream i was still running when
// another upstream answered for it; it reports whether the upstream has now
// been late often enough to be suspect (see lateMin).
func (b *Book) LostHedge(i int, now time.Time) bool {
	s := b.ups[i]
	if s.lateSince.IsZero() || now.Sub(s.lateSince) > lateWindow {
		s.lateSince, s.lateLost, s.answered = now, 0, 0
	}
	s.lateLost++
	if s.lateLost >= lateMin && s.lateLost*lateShare >= s.answered && !now.Before(s.suspectUntil) {
		s.lateSince, s.lateLost, s.answered = now, 0, 0
		return true
	}
	return false
}

// Recovered records a good answer of upstream i: a problem it had is
// over. It reports whether there was one.
func (b *Book) Recovered(i int) bool {
	s := b.ups[i]
	if s.problem == "" {
		return false
	}
	s.problem = ""
	b.version++
	return true
}

// ProblemOf is upstream i's last problem ("" while in good standing).
func (b *Book) ProblemOf(i int) string { return b.ups[i].problem }

func (b *Book) sample(s *standing, took time.Duration) {
	if s.rttSamples == 0 {
		s.srtt, s.rttvar = took, took/2
	} else {
		d := s.srtt - took
		if d < 0 {
			d = -d
		}
		s.rttvar += (d - s.rttvar) / 4
		s.srtt += (took - s.srtt) / 8
	}
	s.rttSamples++
}

// Late records that a call to upstream i has run for `running` without an
// answer while another upstream answered: a lower bound of its RTT, which
// moves the estimate like an answer would (so an upstream that stalls is
// preferred less), without ending any backoff.
func (b *Book) Late(i int, running time.Duration, now time.Time) {
	s := b.ups[i]
	if s.rttSamples > 0 && running > s.srtt {
		// At most twice the estimate: the call was cancelled, so how late
		// it would have been is unknown, and an upstream that loses many
		// hedges must not push its own next hedge ever later.
		b.sample(s, min(running, 2*s.srtt))
		s.sampledAt = now
	}
}

// HedgeAfter is how long a call to upstream i may run before the same
// block is asked elsewhere: srtt + 4 rttvar, at least hedgeFloor, at most
// half the fetch timeout. With no answer of its own yet, the best other
// upstream's round trip stands in (a follower's first calls all go out
// together, and one stalled among them must not cost a whole timeout);
// with none at all, half the fetch timeout.
func (b *Book) HedgeAfter(i int) time.Duration {
	s := b.ups[i]
	if s.rttSamples == 0 {
		if best := b.bestRTT(); best > 0 {
			return min(max(hedgeVarFactor*best, hedgeFloor), b.cfg.FetchTimeout/2)
		}
		return b.cfg.FetchTimeout / 2
	}
	return min(max(s.srtt+hedgeVarFactor*s.rttvar, hedgeFloor), b.cfg.FetchTimeout/2)
}

// Has records that upstream i holds block n (it served it, or a signed
// header of its tip said so).
func (b *Book) Has(i int, n uint64) {
	s := b.ups[i]
	s.tip = max(s.tip, n)
	if s.lacks != 0 && n >= s.lacks {
		s.lacks = 0
	}
}

// Claims records that upstream i says it holds block n: an answer that it
// lacked n is stale, so it may be asked again; nothing more is believed.
func (b *Book) Claims(i int, n uint64) {
	if s := b.ups[i]; s.lacks != 0 && n >= s.lacks {
		s.lacks = 0
	}
}

// HasProof records that upstream i served the proof of block n: proofs
// are made in order, so it holds every proof up to n.
func (b *Book) HasProof(i int, n uint64) { b.ups[i].proofTip = max(b.ups[i].proofTip, n) }

// ProofTip is the highest block whose proof any upstream has served.
func (b *Book) ProofTip() uint64 {
	var t uint64
	for _, s := range b.ups {
		t = max(t, s.proofTip)
	}
	return t
}

// Lacks records that upstream i answered empty for block n.
func (b *Book) Lacks(i int, n uint64, now time.Time) {
	s := b.ups[i]
	if s.lacks == 0 || n < s.lacks || now.Sub(s.lacksAt) >= b.cfg.PollInterval/2 {
		s.lacks, s.lacksAt = n, now
	}
}

// Failed records a failed call to upstream i (an error, or a timeout) and
// backs it off; it returns until when. A failure while it is already backed
// off does not lengthen the backoff: calls in flight together fail together
// (one dropped connection fails a whole window of them), and counting each
// would take a single drop straight to RetryMax.
func (b *Book) Failed(i int, now time.Time) time.Time {
	s := b.ups[i]
	if now.Before(s.downUntil) {
		return s.downUntil
	}
	s.failures++
	s.downUntil = now.Add(Backoff(s.failures, b.cfg.RetryInitial, b.cfg.RetryMax, b.rng))
	b.version++
	return s.downUntil
}

// Problem records what went wrong with upstream i last (a failed call, a
// bad answer), until it next answers well.
func (b *Book) Problem(i int, problem string) {
	if s := b.ups[i]; s.problem != problem {
		s.problem = problem
		b.version++
	}
}

// Reconnected records that upstream i's connection is back: its backoff
// ends now. It reports whether it had failed since it last answered.
// Suspicion stays: a reconnect says nothing about what it serves.
func (b *Book) Reconnected(i int) bool {
	s := b.ups[i]
	failed := s.failures > 0
	s.failures, s.downUntil = 0, time.Time{}
	b.version++
	return failed
}

// Suspect has upstream i asked last for SuspectFor, for why.
func (b *Book) Suspect(i int, now time.Time, why string) {
	s := b.ups[i]
	s.suspectUntil, s.suspectWhy = now.Add(b.cfg.SuspectFor), why
	b.version++
}

// Index is the position of the named upstream (-1: none).
func (b *Book) Index(name string) int {
	for i, s := range b.ups {
		if s.name == name {
			return i
		}
	}
	return -1
}

// grow widens upstream i's limit after it served a block (see limit).
func (b *Book) grow(i int) {
	s := b.ups[i]
	if s.limit < s.threshold {
		s.limit++
	} else if s.grown++; s.grown >= s.limit {
		s.limit, s.grown = s.limit+1, 0
	}
	s.limit = min(s.limit, b.cfg.MaxInFlight)
}

// cut narrows upstream i's limit for a call launched at `launched` that
// timed out (to 1) or was slow (to half its calls in flight), unless the
// call began before the last cut. It reports whether it cut.
func (b *Book) cut(i int, launched, now time.Time, timedOut bool) bool {
	s := b.ups[i]
	if launched.Before(s.cutAt) {
		return false
	}
	s.threshold = max(1, (s.inFlight+1)/2)
	s.limit, s.grown, s.cutAt = s.threshold, 0, now
	if timedOut {
		s.limit = 1
	}
	return true
}

// Notes is what is held against each upstream at now, for an operator;
// upstreams in good standing are left out. At the zero time it is
// everything held, however long it lasts (what the shell publishes; readers
// filter it with notesAt at their own time).
func (b *Book) Notes(now time.Time) map[string]UpstreamNote {
	m := make(map[string]UpstreamNote, len(b.ups))
	for _, s := range b.ups {
		m[s.name] = UpstreamNote{Problem: s.problem, BackedOffUntil: s.downUntil, Suspect: s.suspectWhy, SuspectUntil: s.suspectUntil}
	}
	return notesAt(m, now)
}

// Version changes whenever Notes may have.
func (b *Book) Version() uint64 { return b.version }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
