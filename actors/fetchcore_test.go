package actors

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func testFetchConfig(upstreams ...string) FetchConfig {
	return FetchConfig{Window: testWindowConfig(8, 1<<30, 8), Upstreams: upstreams,
		FetchTimeout: time.Second, SuspectFor: time.Minute, Hedge: true}
}

// fetchSim steps a FetchCore event by event in simulated time, playing
// the shell's part: it records the calls made and answers them as its
// answer function says, fires the timer the core arms, and acknowledges
// deliveries at once (as an Applier that commits instantly) if autoAck.
type fetchSim struct {
	t       *testing.T
	c       *FetchCore
	now     time.Time
	wake    time.Time // the timer armed (zero: none)
	autoAck bool

	// answer says how call c, made at `at`, ends and how long it takes
	// (ok false: it never answers on its own).
	answer func(c Call, at time.Time) (done CallDone, took time.Duration, ok bool)

	open      map[uint64]Call // calls in flight, by id
	calls     []Call          // every call made, in order
	callAt    map[uint64]time.Time
	due       []dueAnswer // answers to come, by time
	cancelled []uint64
	delivered []Delivery
	answers   []ProofAnswer
	logs      []LogLine
	marks     []Mark
	stalls    int
	lastWakes []time.Time // WakeAt of every step, in order
}

type dueAnswer struct {
	at   time.Time
	done CallDone
}

// stepped is a copy of the effects of one step.
type stepped struct {
	Calls      []Call
	Cancels    []uint64
	Deliveries []Delivery
	Answers    []ProofAnswer
	Stalled    bool
	WakeAt     time.Time
}

func newFetchSim(t *testing.T, cfg FetchConfig, next uint64) *fetchSim {
	return &fetchSim{t: t, c: NewFetchCore(cfg, next, t0), now: t0, open: map[uint64]Call{}, callAt: map[uint64]time.Time{}}
}

// step applies ev at the sim's time and carries out the effects.
func (s *fetchSim) step(ev any) stepped {
	s.c.Step(s.now, ev)
	r := s.c.Ready()
	out := stepped{Calls: slices.Clone(r.Calls), Cancels: slices.Clone(r.Cancels), Deliveries: slices.Clone(r.Deliveries),
		Answers: slices.Clone(r.ProofAnswers), Stalled: r.Stalled, WakeAt: r.WakeAt}
	s.logs = append(s.logs, r.Logs...)
	s.marks = append(s.marks, r.Marks...)
	for _, id := range out.Cancels {
		if _, ok := s.open[id]; !ok {
			s.t.Fatalf("at %v: cancel of call %d, not in flight", s.now.Sub(t0), id)
		}
		delete(s.open, id)
		s.cancelled = append(s.cancelled, id)
		s.due = slices.DeleteFunc(s.due, func(d dueAnswer) bool { return d.done.ID == id })
	}
	for _, c := range out.Calls {
		if _, ok := s.open[c.ID]; ok {
			s.t.Fatalf("call id %d reused", c.ID)
		}
		s.open[c.ID], s.callAt[c.ID] = c, s.now
		s.calls = append(s.calls, c)
		if s.answer != nil {
			if d, took, ok := s.answer(c, s.now); ok {
				d.ID = c.ID
				if d.Took == 0 {
					d.Took = took
				}
				s.schedule(s.now.Add(took), d)
			}
		}
	}
	s.delivered = append(s.delivered, out.Deliveries...)
	s.answers = append(s.answers, out.Answers...)
	if !out.WakeAt.IsZero() {
		s.wake = out.WakeAt
	}
	s.lastWakes = append(s.lastWakes, out.WakeAt)
	if out.Stalled {
		s.stalls++
	}
	if s.autoAck && len(out.Deliveries) > 0 {
		s.step(BlockAcked{Tip: out.Deliveries[len(out.Deliveries)-1].N})
	}
	return out
}

func (s *fetchSim) schedule(at time.Time, d CallDone) {
	k, _ := slices.BinarySearchFunc(s.due, at, func(a dueAnswer, t time.Time) int {
		if a.at.After(t) {
			return 1
		}
		return -1 // equal times keep their order
	})
	s.due = slices.Insert(s.due, k, dueAnswer{at, d})
}

// finish ends call id now with done (the sim's own answers aside).
func (s *fetchSim) finish(id uint64, done CallDone) stepped {
	done.ID = id
	if done.Took == 0 {
		done.Took = s.now.Sub(s.callAt[id])
	}
	delete(s.open, id)
	s.due = slices.DeleteFunc(s.due, func(d dueAnswer) bool { return d.done.ID == id })
	return s.step(done)
}

// run plays answers and timer wake-ups, in time order, until `until`. It
// fails the test if the core spins: wakes itself at one instant again and
// again.
func (s *fetchSim) run(until time.Time) {
	spins := 0
	for {
		var at time.Time
		timer := false
		if len(s.due) > 0 {
			at = s.due[0].at
		}
		if !s.wake.IsZero() && (at.IsZero() || s.wake.Before(at)) {
			at, timer = maxTime(s.wake, s.now), true
		}
		if at.IsZero() || at.After(until) {
			s.now = maxTime(s.now, until)
			return
		}
		if !at.Equal(s.now) {
			spins = 0
		} else if timer {
			if spins++; spins > 3 {
				s.t.Fatalf("at %v: the core keeps waking itself at once (WakeAt %v)", s.now.Sub(t0), s.wake.Sub(t0))
			}
		}
		s.now = at
		if timer {
			s.wake = time.Time{}
			s.step(Tick{})
			continue
		}
		d := s.due[0]
		s.due = s.due[1:]
		delete(s.open, d.done.ID)
		s.step(d.done)
	}
}

func (s *fetchSim) at(d time.Duration) time.Time { return t0.Add(d) }

// callsSince returns the calls made at or after `from`.
func (s *fetchSim) callsSince(from time.Time) []Call {
	var cs []Call
	for _, c := range s.calls {
		if !s.callAt[c.ID].Before(from) {
			cs = append(cs, c)
		}
	}
	return cs
}

func (s *fetchSim) inFlight(upstream int) int {
	n := 0
	for _, c := range s.open {
		if c.Upstream == upstream {
			n++
		}
	}
	return n
}

// chain answers fetches as an upstream whose chain has block k from
// genesis + k*interval (none with interval 0), each call taking rtt.
func chain(genesis time.Time, interval, rtt time.Duration) func(c Call, at time.Time) (CallDone, time.Duration, bool) {
	return func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		made := genesis.Add(time.Duration(c.N) * interval)
		if interval == 0 || at.Before(made) {
			return CallDone{Outcome: Empty}, rtt, true
		}
		return CallDone{Outcome: Served, Size: 1000, BlockTime: made, Payload: c.N}, rtt, true
	}
}

// longAgo is the genesis of a chain whose blocks were all made before t0.
var longAgo = t0.Add(-time.Hour)

// catchUp steps the first Tick and lets every upstream answer empty for
// every block: the core is then caught up at block next.
func (s *fetchSim) catchUp() {
	s.answer = chain(t0, 0, 5*time.Millisecond)
	s.step(Tick{})
	s.run(s.now.Add(10 * time.Millisecond))
	if !s.c.Window().CaughtUp() {
		s.t.Fatal("not caught up after every upstream answered empty")
	}
}

// TestFetchCoreCatchesUp: a fresh core fetches the whole window at once,
// spread over the upstreams, and delivers in order within the credits.
func TestFetchCoreCatchesUp(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a", "b"), 1)
	first := s.step(Tick{})
	if len(first.Calls) != 8 {
		t.Fatalf("first step made %d calls, want the window of 8", len(first.Calls))
	}
	for i, c := range first.Calls {
		if c.N != uint64(1+i) || c.Proof || c.Hedge || c.Timeout != time.Second {
			t.Fatalf("call %d: %+v", i, c)
		}
	}
	if s.inFlight(0) != 4 || s.inFlight(1) != 4 {
		t.Fatalf("calls in flight %d and %d, want them spread 4 and 4", s.inFlight(0), s.inFlight(1))
	}
	s.answer = chain(longAgo, time.Millisecond, 5*time.Millisecond)
	s.autoAck = true
	// Answer the first window backwards: nothing goes before block 1.
	for k := len(first.Calls) - 1; k >= 1; k-- {
		c := first.Calls[k]
		if r := s.finish(c.ID, CallDone{Outcome: Served, Size: 1000, Payload: c.N}); len(r.Deliveries) != 0 {
			t.Fatalf("delivered %v before block 1", delivered(r.Deliveries))
		}
	}
	s.finish(first.Calls[0].ID, CallDone{Outcome: Served, Size: 1000, Payload: uint64(1)})
	if got := delivered(s.delivered); !slices.Equal(got, seq(1, 8)) {
		t.Fatalf("delivered %v, want 1..8", got)
	}
	s.run(s.at(100 * time.Millisecond))
	got := delivered(s.delivered)
	for i, n := range got {
		if n != uint64(i+1) {
			t.Fatalf("delivered %v: out of order", got)
		}
	}
	if len(got) < 100 {
		t.Fatalf("delivered %d blocks in 100ms of 5ms calls with a window of 8", len(got))
	}
	if s.c.Book().Tip(0) == 0 || s.c.Book().Tip(1) == 0 {
		t.Fatal("upstream tips not learned")
	}
}

// TestFetchCoreProbesOncePerPoll: a caught-up core with one upstream asks
// for the edge block once per poll interval, and only that block.
func TestFetchCoreProbesOncePerPoll(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a"), 1)
	s.catchUp()
	from := s.now
	s.run(from.Add(10*testPoll + testPoll/2))
	probes := s.callsSince(from)
	if len(probes) != 10 {
		t.Fatalf("%d calls in 10.5 poll intervals, want 10: %+v", len(probes), probes)
	}
	for k, c := range probes {
		if c.N != 1 {
			t.Fatalf("probe %d asked block %d, want the edge 1", k, c.N)
		}
		if k > 0 {
			if gap := s.callAt[c.ID].Sub(s.callAt[probes[k-1].ID]); gap != testPoll {
				t.Fatalf("probes %d and %d %s apart, want the poll interval", k-1, k, gap)
			}
		}
	}
	if len(s.delivered) != 0 || len(s.cancelled) != 0 {
		t.Fatalf("delivered %v, cancelled %v", s.delivered, s.cancelled)
	}
}

// TestFetchCoreProbesOneUpstream: with two upstreams, each probe goes to
// one of them, not both: one empty answer at the edge is the tip.
func TestFetchCoreProbesOneUpstream(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a", "b"), 1)
	s.catchUp()
	from := s.now
	s.run(from.Add(10*testPoll + testPoll/2))
	probes := s.callsSince(from)
	if len(probes) != 10 {
		t.Fatalf("%d calls in 10.5 poll intervals, want 10 (one per probe)", len(probes))
	}
	for k := 1; k < len(probes); k++ {
		if gap := s.callAt[probes[k].ID].Sub(s.callAt[probes[k-1].ID]); gap != testPoll {
			t.Fatalf("calls %d and %d %s apart: a probe went to both upstreams", k-1, k, gap)
		}
	}
}

// TestFetchCoreFollowsTheTip: caught up, a probe that finds its block
// delivers it and moves the edge on by one, on the same cadence: one call
// per poll interval, each for the edge, never the whole window.
func TestFetchCoreFollowsTheTip(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a"), 1)
	s.autoAck = true
	s.catchUp()
	s.answer = chain(t0, time.Second, 5*time.Millisecond) // block k at t0 + k s
	from := s.now
	s.run(s.at(5*time.Second + 500*time.Millisecond))
	if got := delivered(s.delivered); !slices.Equal(got, seq(1, 5)) {
		t.Fatalf("delivered %v, want 1..5", got)
	}
	probes := s.callsSince(from)
	for k := 1; k < len(probes); k++ {
		prev, c := probes[k-1], probes[k]
		if gap := s.callAt[c.ID].Sub(s.callAt[prev.ID]); gap != testPoll {
			t.Fatalf("calls for %d and %d %s apart, want the poll interval", prev.N, c.N, gap)
		}
		if c.N != prev.N && c.N != prev.N+1 {
			t.Fatalf("after a call for %d one for %d: the window opened", prev.N, c.N)
		}
	}
	if want := int(5400*time.Millisecond/testPoll) - 1; len(probes) < want-1 || len(probes) > want+1 {
		t.Fatalf("%d calls, want about %d: one per poll interval", len(probes), want)
	}
}

// TestFetchCoreKeepsUpWithFastBlocks: when the chain makes blocks faster
// than the poll interval, a probe that finds its block asks the next at
// once, so the follower does not fall one block behind per poll.
func TestFetchCoreKeepsUpWithFastBlocks(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a"), 1)
	s.autoAck = true
	s.catchUp()
	s.answer = chain(t0, 30*time.Millisecond, 2*time.Millisecond)
	s.run(s.at(3 * time.Second))
	tip := uint64(3 * time.Second / (30 * time.Millisecond))
	if got := uint64(len(s.delivered)); got+2*uint64(testPoll/(30*time.Millisecond)) < tip {
		t.Fatalf("delivered %d blocks of %d: fell behind", got, tip)
	}
}

// TestFetchCoreNoSpinPastTheEdge: catching up to the tip, a call for a
// block past the edge fails; its retry waits for the edge to move there
// (no timer spins meanwhile), and then goes.
func TestFetchCoreNoSpinPastTheEdge(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a"), 1)
	s.autoAck = true
	made := chain(t0.Add(-1500*time.Millisecond), 300*time.Millisecond, 5*time.Millisecond) // 1..5 made, 6 at +300ms
	failed := false
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		if c.N == 7 && !failed {
			failed = true
			return CallDone{Outcome: Failed, Problem: "connection reset"}, 5 * time.Millisecond, true
		}
		return made(c, at)
	}
	s.step(Tick{})
	s.run(s.at(time.Second))
	if !failed {
		t.Fatal("the call for 7 did not fail")
	}
	if got := delivered(s.delivered); !slices.Equal(got, seq(1, 8)) {
		t.Fatalf("delivered %v, want 1..8", got)
	}
}

// TestFetchCoreTipSeen: a tip the poller saw past the edge fetches the
// blocks up to it at once, of the upstream that claimed it; being only a
// claim, it is not reported as the upstream's tip.
func TestFetchCoreTipSeen(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a", "b"), 1)
	s.catchUp()
	s.answer = nil
	s.now = s.now.Add(time.Millisecond)
	s.c.Step(s.now, TipSeen{Upstream: 1, Tip: 3})
	r := s.c.Ready()
	var ns []uint64
	for _, c := range r.Calls {
		ns = append(ns, c.N)
		if c.N > 1 && c.Upstream != 1 {
			t.Fatalf("block %d asked of %d, which lacks it, not of b", c.N, c.Upstream)
		}
	}
	if !slices.Equal(ns, seq(1, 3)) {
		t.Fatalf("after tip 3 was seen: calls for %v, want 1..3", ns)
	}
	if len(r.Tips) != 0 {
		t.Fatalf("a claimed tip was reported as served: %+v", r.Tips)
	}
}

// TestFetchCoreHedges: a call for the next block that runs past its
// upstream's usual answer time (HedgeAfter) is asked of the other
// upstream too; the first answer wins, the other call is cancelled, and
// the block is delivered once.
func TestFetchCoreHedges(t *testing.T) {
	cfg := testFetchConfig("a", "b")
	cfg.Window.MaxBlocks, cfg.Window.Credits = 4, 4
	s := newFetchSim(t, cfg, 1)
	s.autoAck = true
	s.answer = chain(longAgo, time.Millisecond, 10*time.Millisecond)
	s.step(Tick{})
	s.run(s.at(10 * time.Millisecond)) // 1..4 served: both have RTT samples
	if got := delivered(s.delivered); !slices.Equal(got, seq(1, 4)) {
		t.Fatalf("delivered %v, want 1..4", got)
	}
	var stuck Call
	for _, c := range s.open {
		if c.N == 5 {
			stuck = c
		}
	}
	if stuck.N != 5 {
		t.Fatalf("no call for block 5 in flight: %+v", s.open)
	}
	hedgeAfter := s.c.Book().HedgeAfter(stuck.Upstream)
	if hedgeAfter >= cfg.FetchTimeout/2 {
		t.Fatalf("hedge after %s: no RTT estimate", hedgeAfter)
	}
	// Block 5's first call stalls; the others are answered.
	s.due = slices.DeleteFunc(s.due, func(d dueAnswer) bool { return d.done.ID == stuck.ID })
	s.answer = nil
	s.run(s.callAt[stuck.ID].Add(hedgeAfter - time.Nanosecond))
	for _, c := range s.callsSince(s.callAt[stuck.ID]) {
		if c.Hedge {
			t.Fatalf("hedged %+v before HedgeAfter", c)
		}
	}
	s.run(s.callAt[stuck.ID].Add(hedgeAfter))
	var hedge Call
	for _, c := range s.callsSince(s.callAt[stuck.ID]) {
		if c.Hedge {
			if hedge.Hedge {
				t.Fatal("hedged twice")
			}
			hedge = c
		}
	}
	if !hedge.Hedge || hedge.N != 5 || hedge.Upstream == stuck.Upstream {
		t.Fatalf("at HedgeAfter: hedge %+v, want block 5 of the other upstream than %d", hedge, stuck.Upstream)
	}
	if !slices.ContainsFunc(s.marks, func(m Mark) bool { return m.What == "hedged" && m.N == 5 }) {
		t.Fatal("no journey mark for the hedge")
	}
	s.now = s.now.Add(5 * time.Millisecond)
	r := s.finish(hedge.ID, CallDone{Outcome: Served, Size: 1000, Payload: uint64(5)})
	if !slices.Contains(r.Cancels, stuck.ID) {
		t.Fatalf("cancels %v, want the stalled call %d", r.Cancels, stuck.ID)
	}
	// The cancelled call's answer comes anyway: it is not wanted.
	if s.c.Wanted(stuck.ID) {
		t.Fatal("the stalled call is still wanted")
	}
	s.step(CallDone{ID: stuck.ID, Outcome: Served, Size: 1000, Payload: uint64(5)})
	fives := 0
	for _, d := range s.delivered {
		if d.N == 5 {
			fives++
		}
	}
	if fives != 1 {
		t.Fatalf("block 5 delivered %d times", fives)
	}
}

// TestFetchCoreCutsPerUpstream: a timeout on one upstream cuts its limit
// alone; the other keeps its own, and the core spins no timer while the
// cut upstream is at its limit.
func TestFetchCoreCutsPerUpstream(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a", "b"), 1)
	first := s.step(Tick{})
	s.now = s.at(time.Second)
	for _, c := range first.Calls {
		if c.Upstream == 0 {
			s.finish(c.ID, CallDone{Outcome: TimedOut, Problem: "deadline exceeded"})
		} else {
			s.finish(c.ID, CallDone{Outcome: Served, Size: 1000, Payload: c.N, Took: 10 * time.Millisecond})
		}
	}
	a, b := s.c.Book().ups[0], s.c.Book().ups[1]
	if a.limit != 1 {
		t.Fatalf("a's limit %d after its calls timed out, want 1", a.limit)
	}
	if b.limit != 8 {
		t.Fatalf("b's limit %d, want 8: a's timeouts are none of its business", b.limit)
	}
	if n := s.c.Book().Notes(s.now)["a"]; n.Suspect == "" || n.BackedOffUntil.IsZero() || !strings.Contains(n.Problem, "timed out") {
		t.Fatalf("a's notes %+v, want suspect, backed off, timed out", n)
	}
	s.answer = nil // nothing answers from now on
	s.run(s.at(3 * time.Second))
	if s.inFlight(0) > 1 {
		t.Fatalf("%d calls in flight on a, past its limit of 1", s.inFlight(0))
	}
	if s.inFlight(1) < 2 {
		t.Fatalf("only %d calls in flight on b", s.inFlight(1))
	}
}

// TestFetchCoreSlowLinkLimit: a window of calls timing out together on
// the one upstream cuts its limit once, to 1: the retries go one at a
// time, and while the limit is reached no timer spins on the retries due.
// Blocks served then widen it again.
func TestFetchCoreSlowLinkLimit(t *testing.T) {
	cfg := testFetchConfig("a")
	cfg.Window.RetryInitial, cfg.Window.RetryMax = time.Millisecond, time.Millisecond
	s := newFetchSim(t, cfg, 1)
	first := s.step(Tick{})
	s.now = s.at(time.Second)
	for _, c := range first.Calls {
		s.finish(c.ID, CallDone{Outcome: TimedOut, Problem: "deadline exceeded"})
	}
	if l := s.c.Book().ups[0]; l.limit != 1 || l.threshold != 4 {
		t.Fatalf("limit %d threshold %d, want 1 and 4", l.limit, l.threshold)
	}
	from := s.now
	s.run(s.now.Add(time.Second)) // nothing answers: the one retry hangs
	if got := s.callsSince(from); len(got) != 1 {
		t.Fatalf("retries %+v, want one alone", got)
	}
	s.autoAck = true
	s.answer = chain(longAgo, time.Millisecond, 10*time.Millisecond)
	retry := s.callsSince(from)[0]
	s.finish(retry.ID, CallDone{Outcome: Served, Size: 1000, Payload: retry.N, Took: 10 * time.Millisecond})
	if l := s.c.Book().ups[0].limit; l != 2 {
		t.Fatalf("limit %d after a block, want 2", l)
	}
	s.run(s.now.Add(time.Second))
	if l := s.c.Book().ups[0].limit; l != 8 {
		t.Fatalf("limit %d after a second of blocks, want 8 again", l)
	}
	// A block served slow but in time halves what was in flight.
	var slow Call
	for _, c := range s.open {
		if slow.ID == 0 || c.ID < slow.ID {
			slow = c
		}
	}
	flying := s.c.Book().ups[0].inFlight
	logs := len(s.logs)
	s.finish(slow.ID, CallDone{Outcome: Served, Size: 1000, Payload: slow.N, Took: cfg.FetchTimeout/2 + time.Millisecond})
	if l := s.c.Book().ups[0].limit; l != flying/2 {
		t.Fatalf("limit %d after a slow block with %d in flight, want %d", l, flying, flying/2)
	}
	if !slices.ContainsFunc(s.logs[logs:], func(l LogLine) bool { return strings.Contains(l.Msg, "cut") }) {
		t.Fatal("the cut was not logged")
	}
}

// TestFetchCoreRetriesWithBackoff: a block whose call fails is asked
// again after a backoff that grows with each failure, up to RetryMax; the
// problem is logged once, not once per retry.
func TestFetchCoreRetriesWithBackoff(t *testing.T) {
	cfg := testFetchConfig("a")
	cfg.Window.MaxBlocks = 1
	s := newFetchSim(t, cfg, 1)
	s.answer = func(Call, time.Time) (CallDone, time.Duration, bool) {
		return CallDone{Outcome: Failed, Problem: "connection refused"}, time.Millisecond, true
	}
	s.step(Tick{})
	s.run(s.at(10 * time.Second))
	var gaps []time.Duration
	for k := 1; k < len(s.calls); k++ {
		if s.calls[k].N != 1 {
			t.Fatalf("call %d for block %d", k, s.calls[k].N)
		}
		gaps = append(gaps, s.callAt[s.calls[k].ID].Sub(s.callAt[s.calls[k-1].ID]))
	}
	if len(gaps) < 6 {
		t.Fatalf("%d retries in 10s: %v", len(gaps), gaps)
	}
	for k, g := range gaps {
		if g > cfg.Window.RetryMax+time.Millisecond {
			t.Fatalf("retry %d after %s, past RetryMax", k, g)
		}
		// Doubling, with up to half taken off as jitter: two steps on, a
		// wait is longer, until the cap.
		if k >= 2 && g <= gaps[k-2] && gaps[k-2] < cfg.Window.RetryMax/2 {
			t.Fatalf("retry waits %v: not growing", gaps)
		}
	}
	if gaps[0] > cfg.Window.RetryInitial+time.Millisecond {
		t.Fatalf("first retry after %s, want within RetryInitial", gaps[0])
	}
	if !slices.ContainsFunc(s.marks, func(m Mark) bool { return m.What == "retry" && m.N == 1 }) {
		t.Fatal("no journey mark for the retry")
	}
	problems := 0
	for _, l := range s.logs {
		if l.Warn && strings.Contains(l.Detail, "refused") {
			problems++
		}
	}
	if problems != 1 {
		t.Fatalf("the problem was logged %d times, want once: %+v", problems, s.logs)
	}
}

// TestFetchCoreFailedUpstreamWhileCaughtUp: caught up, one upstream goes
// away (every call fails) and the other keeps answering empty: the probes
// go on, to the live one, once per poll interval, and the core never
// stops asking nor spins.
func TestFetchCoreFailedUpstreamWhileCaughtUp(t *testing.T) {
	for _, gone := range []int{0, 1} {
		t.Run(fmt.Sprint("gone=", gone), func(t *testing.T) {
			s := newFetchSim(t, testFetchConfig("a", "b"), 1)
			s.catchUp()
			s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
				if c.Upstream == gone {
					return CallDone{Outcome: Failed, Problem: "connection refused"}, time.Millisecond, true
				}
				return CallDone{Outcome: Empty}, 5 * time.Millisecond, true
			}
			from := s.now
			s.run(from.Add(2 * time.Second))
			live := 0
			for _, c := range s.callsSince(from) {
				if c.Upstream != gone {
					live++
				}
			}
			if live < 15 {
				t.Fatalf("%d probes of the live upstream in 20 poll intervals", live)
			}
			// Now the block appears: it is fetched within a poll interval.
			s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
				if c.Upstream == gone {
					return CallDone{Outcome: Failed, Problem: "connection refused"}, time.Millisecond, true
				}
				return CallDone{Outcome: Served, Size: 1000, Payload: c.N}, 5 * time.Millisecond, true
			}
			s.run(s.now.Add(testPoll + 10*time.Millisecond))
			if len(s.delivered) == 0 || s.delivered[0].N != 1 {
				t.Fatalf("block 1 not delivered: %v", delivered(s.delivered))
			}
		})
	}
}

// TestFetchCoreReconnectEndsBackoff: when a failed upstream's connection
// is back, every block that failed on it is asked again at once, however
// long the backoffs were; a reconnection of one that never failed changes
// nothing.
func TestFetchCoreReconnectEndsBackoff(t *testing.T) {
	cfg := testFetchConfig("a")
	cfg.Window.MaxBlocks = 4
	cfg.Window.RetryInitial, cfg.Window.RetryMax = time.Minute, time.Hour
	s := newFetchSim(t, cfg, 1)
	s.step(Tick{})
	if r := s.step(LinkBack{Upstream: 0}); len(r.Calls) != 0 || len(s.logs) != 0 {
		t.Fatal("a connection of an upstream that never failed changed something")
	}
	for _, c := range slices.Clone(s.calls) {
		s.finish(c.ID, CallDone{Outcome: Failed, Problem: "connection reset"})
	}
	if len(s.open) != 0 {
		t.Fatalf("%d calls in flight after all failed", len(s.open))
	}
	s.run(s.at(time.Second))
	if len(s.open) != 0 {
		t.Fatal("asked again a second into a minute's backoff")
	}
	logs := len(s.logs)
	r := s.step(LinkBack{Upstream: 0})
	var ns []uint64
	for _, c := range r.Calls {
		ns = append(ns, c.N)
	}
	if !slices.Equal(ns, seq(1, 4)) {
		t.Fatalf("after the reconnection: calls for %v, want 1..4 at once", ns)
	}
	if len(s.logs) == logs {
		t.Fatal("the reconnection was not logged")
	}
}

// TestFetchCoreResync: a resync drops every call in flight (cancelled) and
// delivers from the block asked; one to where the window already is
// changes nothing.
func TestFetchCoreResync(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a"), 1)
	first := s.step(Tick{})
	if r := s.step(ResyncFrom{Next: 1}); len(r.Cancels) != 0 || len(r.Calls) != 0 {
		t.Fatalf("a resync to where it is: %+v", r)
	}
	r := s.step(ResyncFrom{Next: 5})
	slices.Sort(r.Cancels)
	var ids, ns []uint64
	for _, c := range first.Calls {
		ids = append(ids, c.ID)
	}
	for _, c := range r.Calls {
		ns = append(ns, c.N)
	}
	if !slices.Equal(r.Cancels, ids) || !slices.Equal(ns, seq(5, 12)) {
		t.Fatalf("after a resync to 5: cancelled %v, want %v; calls for %v, want 5..12", r.Cancels, ids, ns)
	}
	if s.c.Wanted(first.Calls[0].ID) {
		t.Fatal("a call from before the resync is still wanted")
	}
	if r := s.step(CallDone{ID: first.Calls[4].ID, Outcome: Served, Size: 1000, Payload: uint64(5)}); len(r.Deliveries) != 0 {
		t.Fatal("an answer from before the resync was delivered")
	}
}

// TestFetchCoreRejected: a block that fails validation is fetched again,
// from another upstream, and the one that served it is suspect.
func TestFetchCoreRejected(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a", "b"), 1)
	s.autoAck = true
	s.answer = chain(longAgo, time.Millisecond, 5*time.Millisecond)
	s.step(Tick{})
	s.run(s.at(5 * time.Millisecond))
	if len(s.delivered) != 8 {
		t.Fatalf("delivered %d, want 8", len(s.delivered))
	}
	bad := s.delivered[2] // block 3
	s.answer = nil
	r := s.step(BlockRejected{N: 3, Upstream: bad.Upstream, Why: "state root differs"})
	if len(r.Calls) == 0 || r.Calls[0].N != 3 || r.Calls[0].Upstream == bad.Upstream {
		t.Fatalf("after block 3 was rejected: calls %+v, want 3 from the other upstream", r.Calls)
	}
	name := s.c.Book().Name(bad.Upstream)
	if n := s.c.Book().Notes(s.now)[name]; !strings.Contains(n.Suspect, "state root") {
		t.Fatalf("notes of %s: %+v, want it suspect", name, n)
	}
}

// TestFetchCoreBadBlock: a block that fails the cheap checks is asked of
// the other upstream at once; the one that served it is suspect.
func TestFetchCoreBadBlock(t *testing.T) {
	cfg := testFetchConfig("a", "b")
	cfg.Window.MaxBlocks = 1
	s := newFetchSim(t, cfg, 1)
	c := s.step(Tick{}).Calls[0]
	r := s.finish(c.ID, CallDone{Outcome: Bad, Problem: "bad signature", Took: time.Millisecond})
	if len(r.Calls) != 1 || r.Calls[0].Upstream == c.Upstream {
		t.Fatalf("after a bad block: %+v, want it asked of the other upstream", r.Calls)
	}
	n := s.c.Book().Notes(s.now)[s.c.Book().Name(c.Upstream)]
	if !strings.Contains(n.Suspect, "bad signature") || !strings.Contains(n.Problem, "bad block") {
		t.Fatalf("notes %+v", n)
	}
}

// TestFetchCoreStalls: deliveries unacknowledged for stallAfter make the
// core ask for a resync from the store, once, at that time.
func TestFetchCoreStalls(t *testing.T) {
	cfg := testFetchConfig("a")
	cfg.Window.MaxBlocks, cfg.Window.Credits = 1, 1
	s := newFetchSim(t, cfg, 1)
	s.answer = chain(longAgo, time.Millisecond, 5*time.Millisecond)
	s.step(Tick{})
	s.run(s.at(stallAfter - time.Millisecond))
	if len(s.delivered) != 1 || s.stalls != 0 {
		t.Fatalf("delivered %d, stalled %d times", len(s.delivered), s.stalls)
	}
	s.run(s.at(stallAfter + 10*time.Millisecond))
	if s.stalls != 1 {
		t.Fatalf("stalled %d times by stallAfter, want once", s.stalls)
	}
}

// TestFetchCoreProofAsks: proof asks become calls with Proof set, placed
// before block fetches; an answer comes back as a ProofAnswer with the
// proof; a bad proof marks its upstream suspect.
func TestFetchCoreProofAsks(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a", "b"), 10)
	s.catchUp()
	r := s.step(ProofWanted{Wants: []ProofWant{{N: 3}, {N: 4, Known: true}, {N: 3}}})
	var proofCalls []Call
	for _, c := range r.Calls {
		if c.Proof {
			proofCalls = append(proofCalls, c)
		}
	}
	if len(proofCalls) != 2 || proofCalls[0].N != 3 || proofCalls[1].N != 4 {
		t.Fatalf("proof calls %+v, want 3 and 4 once each", proofCalls)
	}
	if !s.c.ProofCall(proofCalls[0].ID) {
		t.Fatal("ProofCall says no")
	}
	if r := s.step(ProofWanted{Wants: []ProofWant{{N: 3}}}); len(r.Calls) != 0 {
		t.Fatal("a proof asked while its ask is in flight was asked again")
	}
	good, bad := proofCalls[0], proofCalls[1]
	r = s.finish(good.ID, CallDone{Outcome: Served, Size: 1000, Proof: true, Payload: "proof 3"})
	want := ProofAnswer{N: 3, Outcome: Served, Proof: "proof 3", Size: 1000, Upstream: good.Upstream}
	if len(r.Answers) != 1 || r.Answers[0] != want {
		t.Fatalf("answers %+v, want %+v", r.Answers, want)
	}
	if len(r.Deliveries) != 0 {
		t.Fatal("a proof ask's block was delivered")
	}
	if s.c.Book().ProofTip() != 3 {
		t.Fatalf("proof tip %d, want 3", s.c.Book().ProofTip())
	}
	r = s.finish(bad.ID, CallDone{Outcome: Served, Size: 1000, BadProof: "commitment mismatch"})
	name := s.c.Book().Name(bad.Upstream)
	n := s.c.Book().Notes(s.now)[name]
	if !strings.Contains(n.Suspect, "bad proof of block 4") || !strings.Contains(n.Problem, "commitment mismatch") {
		t.Fatalf("notes of %s: %+v, want it suspect for the bad proof", name, n)
	}
	// The proof exists: it is asked once more, of the other upstream,
	// before the ProofTracker hears of it.
	if len(r.Answers) != 0 || len(r.Calls) != 1 || !r.Calls[0].Proof || r.Calls[0].N != 4 || r.Calls[0].Upstream == bad.Upstream {
		t.Fatalf("after a bad proof: answers %+v, calls %+v; want 4 asked of the other upstream", r.Answers, r.Calls)
	}
	again := r.Calls[0]
	if r := s.step(ProofWanted{Wants: []ProofWant{{N: 4}}}); len(r.Calls) != 0 {
		t.Fatalf("asked 4 again while its ask is in flight: %+v", r.Calls)
	}
	r = s.finish(again.ID, CallDone{Outcome: Served, Size: 1000, Proof: true, Payload: "proof 4"})
	want = ProofAnswer{N: 4, Known: true, Outcome: Served, Proof: "proof 4", Size: 1000, Upstream: again.Upstream}
	if len(r.Answers) != 1 || r.Answers[0] != want {
		t.Fatalf("answers %+v, want %+v", r.Answers, want)
	}
}

// TestFetchCoreProofAskFails: a failed proof ask comes back as a failure
// for the ProofTracker, and backs the upstream off like a failed fetch.
func TestFetchCoreProofAskFails(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("a"), 10)
	s.catchUp()
	r := s.step(ProofWanted{Wants: []ProofWant{{N: 3}}})
	if len(r.Calls) != 1 {
		t.Fatalf("calls %+v", r.Calls)
	}
	r = s.finish(r.Calls[0].ID, CallDone{Outcome: TimedOut, Problem: "deadline exceeded"})
	if len(r.Answers) != 1 || r.Answers[0].Outcome != TimedOut || r.Answers[0].Proof != nil {
		t.Fatalf("answers %+v", r.Answers)
	}
	if n := s.c.Book().Notes(s.now)["a"]; n.BackedOffUntil.IsZero() {
		t.Fatalf("notes %+v, want a backoff", n)
	}
	// With no other upstream to ask, a bad proof goes to the ProofTracker
	// as it is; the upstream is suspect.
	s.now = s.now.Add(time.Minute)
	r = s.step(ProofWanted{Wants: []ProofWant{{N: 4}}})
	k := slices.IndexFunc(r.Calls, func(c Call) bool { return c.Proof })
	if k < 0 || r.Calls[k].N != 4 {
		t.Fatalf("calls %+v, want a proof call for 4", r.Calls)
	}
	r = s.finish(r.Calls[k].ID, CallDone{Outcome: Served, Size: 1000, BadProof: "commitment mismatch"})
	if len(r.Answers) != 1 || r.Answers[0].Proof != nil || r.Answers[0].BadProof != "commitment mismatch" {
		t.Fatalf("answers %+v, want the bad proof without a proof", r.Answers)
	}
	if n := s.c.Book().Notes(s.now)["a"]; !strings.Contains(n.Suspect, "bad proof of block 4") {
		t.Fatalf("notes %+v, want a suspect for the bad proof", n)
	}
}

// TestFetchCoreHedgePastTheTip: a fresh follower's first calls go out
// before it knows where the tip is; those past the tip that went to a
// stalling upstream are hedged at the other, whose empty answer is the
// tip: the stalled call is cancelled and the window probes on the poll
// cadence, instead of hedging the same blocks again at every round trip.
func TestFetchCoreHedgePastTheTip(t *testing.T) {
	s := newFetchSim(t, testFetchConfig("staller", "honest"), 1)
	s.autoAck = true
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		if c.Upstream == 0 {
			return CallDone{}, 0, false // never answers
		}
		if c.N <= 2 {
			return CallDone{Outcome: Served, Size: 100, BlockTime: t0}, 5 * time.Millisecond, true
		}
		return CallDone{Outcome: Empty}, 5 * time.Millisecond, true
	}
	s.step(Tick{})
	s.run(s.at(2 * time.Second))
	if got := delivered(s.delivered); !slices.Equal(got, seq(1, 2)) {
		t.Fatalf("delivered %v, want 1 and 2", got)
	}
	hedges := 0
	for _, c := range s.calls {
		if c.Hedge {
			hedges++
		}
	}
	// About one hedge per block the staller was asked at the start (the
	// window of 8 and the blocks it slides over before the tip is known),
	// and none later: the probes go to the honest upstream, which has the
	// highest tip.
	if hedges > 12 {
		t.Fatalf("%d hedges in 2 s: blocks past the tip hedged again and again", hedges)
	}
	if !s.c.Window().CaughtUp() {
		t.Fatal("the honest upstream's empty answers did not make the window caught up")
	}
	probes := len(s.callsSince(s.at(time.Second)))
	if want := int(time.Second / s.c.cfg.Window.PollInterval); probes > want+1 {
		t.Fatalf("%d calls in the last second, want a probe per poll interval (%d)", probes, want)
	}
}

// TestFetchCoreHedgesAtASuspect: the only other upstream is suspect (it
// lost a few hedges while its connection warmed up, say); a stalled call
// at the head of the line is still hedged there: suspicion orders who is
// asked first, and waiting out the stall would cost the whole timeout.
func TestFetchCoreHedgesAtASuspect(t *testing.T) {
	cfg := testFetchConfig("a", "b")
	cfg.Window.MaxBlocks, cfg.Window.Credits = 4, 4
	s := newFetchSim(t, cfg, 1)
	s.autoAck = true
	s.c.Book().Suspect(1, s.now, "test: late")
	// Every call goes to a, the one in good standing; block 5's stalls.
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		if c.N == 5 && c.Upstream == 0 {
			return CallDone{}, 0, false
		}
		return chain(longAgo, time.Millisecond, 10*time.Millisecond)(c, at)
	}
	s.step(Tick{})
	s.run(s.at(time.Second))
	var first, hedge Call
	for _, c := range s.calls {
		switch {
		case c.N == 5 && !c.Hedge:
			first = c
		case c.N == 5:
			hedge = c
		}
	}
	if first.N != 5 || first.Upstream != 0 {
		t.Fatalf("block 5's first call %+v, want one to a (b is suspect)", first)
	}
	if !hedge.Hedge || hedge.Upstream != 1 {
		t.Fatalf("block 5's stalled call was not hedged at the suspect b: hedge %+v, calls %+v", hedge, s.calls)
	}
	if got := delivered(s.delivered); len(got) < 5 || got[4] != 5 {
		t.Fatalf("delivered %v, want block 5 through the hedge", got)
	}
	if at := s.callAt[hedge.ID].Sub(s.callAt[first.ID]); at > cfg.FetchTimeout/2 {
		t.Fatalf("hedged %s after the first call, want within half the fetch timeout", at)
	}
}

// TestFetchCoreHedgeOfABlockNotMadeYet: a fresh follower asks blocks not
// made yet. Block 4's call at the honest upstream is slow, so it is hedged
// at the staller, which holds the hedge; then the honest upstream answers
// that it has no block 4 yet. The staller's call must not be left to run
// out the fetch timeout: once the honest upstream may be asked again (its
// empty answer stale, half a poll interval on), the staller's call is
// hedged there, and block 4 comes soon after it is made.
func TestFetchCoreHedgeOfABlockNotMadeYet(t *testing.T) {
	const (
		interval = 100 * time.Millisecond
		n        = 4 // asked of the honest upstream first (blocks spread by number)
	)
	s := newFetchSim(t, testFetchConfig("honest", "staller"), 1)
	s.autoAck = true
	slowOnce := true
	s.answer = func(c Call, at time.Time) (CallDone, time.Duration, bool) {
		if c.Upstream == 1 {
			return CallDone{}, 0, false // holds every call
		}
		rtt := 5 * time.Millisecond
		if c.N == n && slowOnce {
			slowOnce, rtt = false, 250*time.Millisecond
		}
		return chain(t0, interval, rtt)(c, at)
	}
	s.step(Tick{})
	made := t0.Add(n * interval)
	s.run(made.Add(s.c.cfg.FetchTimeout / 2))
	var calls []Call
	for _, c := range s.calls {
		if c.N == n {
			calls = append(calls, c)
		}
	}
	if len(calls) < 2 || calls[0].Upstream != 0 || !calls[1].Hedge || calls[1].Upstream != 1 {
		t.Fatalf("block %d's calls %+v: want the first at the honest upstream, hedged at the staller", n, calls)
	}
	if got := delivered(s.delivered); !slices.Contains(got, n) {
		t.Fatalf("delivered %v by %s after block %d was made: its only call left was the staller's, waited out", got, s.c.cfg.FetchTimeout/2, n)
	}
	// Asked again of the honest upstream after its empty answer, and
	// within a poll interval of the block's making.
	var again Call
	for _, c := range calls[2:] {
		if c.Upstream == 0 {
			again = c
			break
		}
	}
	if again.N != n {
		t.Fatalf("block %d never asked again of the honest upstream: calls %+v", n, calls)
	}
	if late := s.callAt[again.ID].Sub(made); late > s.c.cfg.Window.PollInterval {
		t.Fatalf("block %d asked again of the honest upstream %s after it was made, want within a poll interval", n, late)
	}
}
