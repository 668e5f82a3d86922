package actors

import (
	"testing"
	"time"
)

func testBookConfig() BookConfig {
	return BookConfig{PollInterval: testPoll, RetryInitial: 10 * time.Millisecond, RetryMax: time.Second,
		SuspectFor: time.Minute, FetchTimeout: time.Second, MaxInFlight: 8, Seed: 1}
}

func TestBookPick(t *testing.T) {
	c := testBookConfig()
	b := NewBook([]string{"a", "b"}, c)
	// Spread: consecutive blocks go to different upstreams.
	i1, _ := b.Pick(1, t0, -1)
	i2, _ := b.Pick(2, t0, -1)
	if i1 == i2 {
		t.Fatalf("blocks 1 and 2 both went to %s", b.Name(i1))
	}
	b.Done(i1)
	b.Done(i2)
	// The one to avoid (it served this block bad) is asked only if no
	// other will do.
	for n := uint64(1); n <= 4; n++ {
		i, _ := b.Pick(n, t0, 0)
		if b.Name(i) != "b" {
			t.Fatalf("block %d went to a, which is to be avoided", n)
		}
		b.Done(i)
	}
	// A suspect is avoided while another will do.
	b.Suspect(0, t0, "bad block 3")
	for n := uint64(1); n <= 4; n++ {
		i, ok := b.Pick(n, t0, -1)
		if !ok || b.Name(i) != "b" {
			t.Fatalf("block %d went to %s while a is suspect", n, b.Name(i))
		}
		b.Done(i)
	}
	// A backed-off upstream is not asked; with both down, nobody is.
	b.Failed(1, t0)
	i, ok := b.Pick(1, t0, -1)
	if !ok || b.Name(i) != "a" {
		t.Fatalf("with b down, want suspect a; got %v %v", ok, i)
	}
	b.Done(i)
	b.Failed(0, t0)
	if _, ok := b.Pick(1, t0, -1); ok {
		t.Fatal("picked an upstream while all are backed off")
	}
	if up := b.NextChance(1, t0); !up.After(t0) {
		t.Fatalf("next chance %v is not after now", up)
	}
	// Lacking a block: skipped until the answer goes stale.
	b = NewBook([]string{"a", "b"}, c)
	b.Lacks(0, 10, t0)
	if i, _ := b.Pick(10, t0, -1); b.Name(i) != "b" {
		t.Fatal("asked a, which lacks block 10")
	}
	if b.AllLack(10, t0) {
		t.Fatal("b was not asked yet")
	}
	b.Lacks(1, 10, t0)
	if !b.AllLack(10, t0) || !b.AllLack(11, t0) || b.AllLack(9, t0) {
		t.Fatal("AllLack wrong: lacking 10 means lacking what comes after, not before")
	}
	if b.AllLack(10, t0.Add(c.PollInterval/2)) {
		t.Fatal("AllLack never goes stale")
	}
	b.Has(0, 10)
	if b.AllLack(10, t0) || !b.SomeoneHas(10, 1) || b.SomeoneHas(10, 0) {
		t.Fatal("a block served is no longer lacked, and someone has it")
	}
}

// TestBookPickProbe: a probe past the tip goes to one upstream, the one
// most likely to have the block first: not suspect, highest tip, fastest.
func TestBookPickProbe(t *testing.T) {
	c := testBookConfig()
	b := NewBook([]string{"a", "b", "c"}, c)
	b.Has(0, 5)
	b.Has(1, 7)
	b.Has(2, 7)
	b.Answered(1, 50*time.Millisecond, t0)
	b.Answered(2, 10*time.Millisecond, t0)
	for _, tc := range []struct {
		name string
		prep func()
		want string
	}{
		{"highest tip, then fastest", func() {}, "c"},
		{"not a suspect", func() { b.Suspect(2, t0, "bad") }, "b"},
		{"not one that lacks it", func() { b.Lacks(1, 8, t0) }, "a"},
		{"not a backed-off one", func() { b.Failed(0, t0) }, "c"},
	} {
		tc.prep()
		i, ok := b.PickProbe(8, t0)
		if !ok || b.Name(i) != tc.want {
			t.Fatalf("%s: probe went to %v (%v), want %s", tc.name, i, ok, tc.want)
		}
		b.Done(i)
	}
}

// TestFailedUpstreamWhileCaughtUp: one upstream went away (backed off) and
// the other has just answered that it lacks the edge block. No upstream
// may be asked now, and the retry must fall due when one may be: when the
// backoff ends or the "lacks" answer goes stale, whichever is first. A
// healthy upstream's zero backoff once made this "never", and a caught-up
// follower stopped syncing for good when an upstream went away.
func TestFailedUpstreamWhileCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		order        []string
		retryInitial time.Duration // shorter or longer than poll/2
	}{
		{[]string{"gone", "live"}, 10 * time.Millisecond},
		{[]string{"live", "gone"}, 10 * time.Millisecond},
		{[]string{"gone", "live"}, time.Second},
		{[]string{"live", "gone"}, time.Second},
	} {
		c := testBookConfig()
		c.RetryInitial, c.RetryMax = tc.retryInitial, 10*tc.retryInitial
		b := NewBook(tc.order, c)
		gone, live := b.Index("gone"), b.Index("live")
		downUntil := b.Failed(gone, t0)
		b.Lacks(live, 7, t0)
		if _, ok := b.Pick(7, t0, -1); ok {
			t.Fatalf("%v: picked an upstream though one is down and the other lacks 7", tc)
		}
		if b.AllLack(7, t0) {
			t.Fatalf("%v: all lack 7, though one was never asked", tc)
		}
		want := t0.Add(min(downUntil.Sub(t0), c.PollInterval/2))
		if got := b.NextChance(7, t0); !got.Equal(want) {
			t.Fatalf("%v: next chance %v, want %v", tc, got.Sub(t0), want.Sub(t0))
		}
		i, ok := b.Pick(7, want, -1)
		if !ok {
			t.Fatalf("%v: nobody to ask at the next chance", tc)
		}
		b.Done(i)
	}
}

// TestConcurrentFailuresBackOffOnce: a dropped connection fails every
// call in flight on it at once; that is one failure of the upstream, not
// one per call, or a single drop would back it off for RetryMax. A failure
// after the backoff has ended does lengthen it.
func TestConcurrentFailuresBackOffOnce(t *testing.T) {
	c := testBookConfig()
	c.RetryInitial, c.RetryMax = 100*time.Millisecond, 5*time.Second
	b := NewBook([]string{"a"}, c)
	first := b.Failed(0, t0)
	for k := 0; k < 64; k++ {
		if d := b.Failed(0, t0.Add(time.Millisecond)); !d.Equal(first) {
			t.Fatalf("call %d of the same drop backed off until %v, the first until %v", k, d.Sub(t0), first.Sub(t0))
		}
	}
	if _, ok := b.Pick(1, first, -1); !ok {
		t.Fatalf("upstream still backed off %v after one drop", first.Sub(t0))
	}
	b.Done(0)
	// The second step is 2 x RetryInitial less up to half of it as jitter.
	if d := b.Failed(0, first); d.Sub(first) < c.RetryInitial {
		t.Fatalf("a failure after the backoff ended backed off only %s", d.Sub(first))
	}
	// An answer ends the backoff and the count.
	b.Answered(0, time.Millisecond, t0)
	if _, ok := b.Pick(1, first, -1); !ok {
		t.Fatal("an upstream that answered is still backed off")
	}
	b.Done(0)
	if d := b.Failed(0, first); d.Sub(first) > c.RetryInitial {
		t.Fatalf("after an answer, a failure backed off %s, want a first step again", d.Sub(first))
	}
}

// TestReconnectEndsBackoff: a reconnection ends an upstream's backoff at
// once, however long; it does not lift suspicion, and one of an upstream
// that never failed reports nothing.
func TestReconnectEndsBackoff(t *testing.T) {
	c := testBookConfig()
	c.RetryInitial, c.RetryMax = time.Minute, time.Hour
	b := NewBook([]string{"a"}, c)
	if b.Reconnected(0) {
		t.Fatal("a first connection reported as coming back from a failure")
	}
	b.Failed(0, t0)
	b.Failed(0, b.NextChance(1, t0)) // a second drop: minutes of backoff
	later := t0.Add(time.Second)
	if _, ok := b.Pick(1, later, -1); ok {
		t.Fatal("upstream asked a second into a minute's backoff")
	}
	if !b.Reconnected(0) {
		t.Fatal("a reconnection after failures not reported")
	}
	if _, ok := b.Pick(1, later, -1); !ok {
		t.Fatal("the reconnected upstream is not asked")
	}
	if b.Notes(later)["a"].BackedOffUntil != (time.Time{}) {
		t.Fatal("the notes still show a backoff")
	}

	// Suspicion stays: of a trusted and a suspect upstream, the trusted
	// one is asked first even after the suspect one reconnected.
	v := NewBook([]string{"suspect", "trusted"}, c)
	v.Suspect(0, t0, "bad block 1")
	v.Failed(0, t0)
	v.Reconnected(0)
	for n := range uint64(4) {
		i, ok := v.Pick(n, later, -1)
		if !ok || v.Name(i) != "trusted" {
			t.Fatalf("block %d: picked %d (%v), want the trusted upstream", n, i, ok)
		}
		v.Done(i)
	}
	if v.Notes(later)["suspect"].Suspect != "bad block 1" {
		t.Fatal("the notes lost the suspicion")
	}
}

// TestSlowLinkLimit: on a link too slow for the whole window, calls that
// time out together cut the calls allowed in flight once, to 1; the limit
// grows back by one per block below the threshold (half what was in
// flight) and by one per limit's worth above it; a call slow but in time
// halves it. Per upstream: the other keeps its limit.
func TestSlowLinkLimit(t *testing.T) {
	b := NewBook([]string{"slow", "fast"}, testBookConfig())
	for range 8 {
		b.ups[0].inFlight++ // eight calls in flight, launched at t0
	}
	later := t0.Add(10 * time.Second)
	b.Done(0)
	if !b.cut(0, t0, later, true) {
		t.Fatal("a timeout did not cut")
	}
	for range 7 { // the rest of the same window time out too
		b.Done(0)
		if b.cut(0, t0, later, true) {
			t.Fatal("a call launched before the cut cut again")
		}
	}
	s := b.ups[0]
	if s.limit != 1 || s.threshold != 4 {
		t.Fatalf("after a window of timeouts: limit %d threshold %d, want 1 and 4", s.limit, s.threshold)
	}
	if f := b.ups[1]; f.limit != 8 {
		t.Fatalf("the fast upstream's limit went to %d, want 8", f.limit)
	}
	if b.Limit() != 9 {
		t.Fatalf("total limit %d, want 1 + 8", b.Limit())
	}
	if _, ok := b.Pick(0, later, -1); !ok { // 0 % 2: slow first
		t.Fatal("nothing picked")
	}
	if i, ok := b.Pick(0, later, -1); !ok || i != 1 {
		t.Fatalf("second call went to %d (%v), want the fast one: the slow one is at its limit", i, ok)
	}
	// Slow start: 1, 2, 3, 4 as blocks arrive, then one more per 4 blocks.
	for want := 2; want <= 4; want++ {
		b.grow(0)
		if s.limit != want {
			t.Fatalf("limit %d, want %d", s.limit, want)
		}
	}
	for k := range 3 {
		if b.grow(0); s.limit != 4 {
			t.Fatalf("above the threshold the limit grew after %d blocks", k+1)
		}
	}
	if b.grow(0); s.limit != 5 {
		t.Fatalf("after 4 more blocks: limit %d, want 5", s.limit)
	}
	for range 100 {
		b.grow(0)
	}
	if s.limit != 8 {
		t.Fatalf("limit grew to %d, past MaxInFlight", s.limit)
	}
	// A call slow but in time, launched after the cut, halves what is in
	// flight.
	s.inFlight = 6
	b.Done(0)
	if !b.cut(0, later, later.Add(time.Second), false) || s.limit != 3 {
		t.Fatalf("after a slow call with 6 in flight: limit %d, want 3", s.limit)
	}
}

// TestBookRTT: the RTT estimate (RFC 6298) sets when a call is late
// enough to hedge: srtt + 4 rttvar, at least hedgeFloor, at most half the
// fetch timeout; half the timeout before any sample.
func TestBookRTT(t *testing.T) {
	c := testBookConfig()
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"no sample", nil, c.FetchTimeout / 2},
		{"one sample", []time.Duration{10 * time.Millisecond}, 30 * time.Millisecond},
		{"smoothed", []time.Duration{10 * time.Millisecond, 2 * time.Millisecond}, 32 * time.Millisecond},
		{"floor", []time.Duration{time.Millisecond}, hedgeFloor},
		{"cap", []time.Duration{2 * time.Second}, c.FetchTimeout / 2},
	} {
		b := NewBook([]string{"a"}, c)
		for _, s := range tc.samples {
			b.Answered(0, s, t0)
		}
		if got := b.HedgeAfter(0); got != tc.want {
			t.Errorf("%s: hedge after %s, want %s", tc.name, got, tc.want)
		}
	}
	// A late call raises the estimate like an answer would; one that ran
	// shorter than srtt says nothing.
	b := NewBook([]string{"a"}, c)
	b.Answered(0, 10*time.Millisecond, t0)
	before := b.HedgeAfter(0)
	b.Late(0, 5*time.Millisecond, t0)
	if b.HedgeAfter(0) != before {
		t.Fatal("a call running shorter than srtt moved the estimate")
	}
	b.Late(0, 200*time.Millisecond, t0)
	if b.HedgeAfter(0) <= before {
		t.Fatal("a late call did not raise the estimate")
	}
}

// TestBookNotes: an operator sees what is held against each upstream: a
// backoff and a suspicion while they last, a problem until a good answer;
// an upstream in good standing is not listed. Version moves with them.
func TestBookNotes(t *testing.T) {
	b := NewBook([]string{"a", "b", "c"}, testBookConfig())
	v := b.Version()
	until := b.Failed(0, t0)
	b.Problem(0, "refused")
	b.Suspect(1, t0, "bad block 7")
	if b.Version() == v {
		t.Fatal("version did not move")
	}
	got := b.Notes(t0)
	if len(got) != 2 {
		t.Fatalf("notes %+v, want a and b", got)
	}
	if a := got["a"]; a.Problem != "refused" || !a.BackedOffUntil.Equal(until) || a.Suspect != "" {
		t.Fatalf("a: %+v", a)
	}
	if n := got["b"]; n.Suspect != "bad block 7" || !n.SuspectUntil.Equal(t0.Add(time.Minute)) || n.Problem != "" {
		t.Fatalf("b: %+v", n)
	}
	if a := b.Notes(until)["a"]; a.Problem != "refused" || !a.BackedOffUntil.IsZero() {
		t.Fatalf("a after its backoff: %+v, want the problem and no backoff", a)
	}
	v = b.Version()
	if !b.Recovered(0) || b.Version() == v || b.Recovered(0) {
		t.Fatal("recovery not reported once, or version unchanged")
	}
	if _, ok := b.Notes(until)["a"]; ok {
		t.Fatal("a listed after it answered well")
	}
	if got := b.Notes(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("after every suspicion ended: %+v, want nothing", got)
	}
}

// TestNotesAt: the status page shows only what still holds at its time: a
// backoff or a suspicion that has ended drops out, a problem stays, and an
// upstream with nothing left is not listed.
func TestNotesAt(t *testing.T) {
	all := map[string]UpstreamNote{
		"a": {Problem: "refused", BackedOffUntil: t0.Add(time.Second)},
		"b": {Suspect: "bad block 7", SuspectUntil: t0.Add(time.Minute)},
		"c": {BackedOffUntil: t0.Add(time.Second)},
		"d": {},
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		want map[string]UpstreamNote
	}{
		{"at the start", t0, map[string]UpstreamNote{"a": all["a"], "b": all["b"], "c": all["c"]}},
		{"backoffs ended", t0.Add(time.Second), map[string]UpstreamNote{"a": {Problem: "refused"}, "b": all["b"]}},
		{"suspicion ended", t0.Add(time.Minute), map[string]UpstreamNote{"a": {Problem: "refused"}}},
	} {
		got := notesAt(all, tc.at)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		for k, w := range tc.want {
			if got[k] != w {
				t.Errorf("%s: %s is %+v, want %+v", tc.name, k, got[k], w)
			}
		}
	}
	if all["a"].BackedOffUntil.IsZero() {
		t.Fatal("notesAt changed its input")
	}
}

// TestBookSlowAndLate: an upstream whose answers take many times the best
// one's is asked only when the fast one is busy, but only while that
// estimate is fresh; one that another upstream beats to the answer often
// (lateMin times within lateWindow, and for one call in lateShare) is
// suspect, while honest jitter's occasional lost hedge is not.
func TestBookSlowAndLate(t *testing.T) {
	c := testBookConfig()
	b := NewBook([]string{"fast", "slow"}, c)
	b.Answered(0, 10*time.Millisecond, t0)
	b.Answered(1, 100*time.Millisecond, t0)
	for n := uint64(1); n <= 4; n++ {
		i, ok := b.Pick(n, t0, -1)
		if !ok || b.Name(i) != "fast" {
			t.Fatalf("block %d went to %q while the fast one had room", n, b.Name(i))
		}
		b.Done(i)
	}
	later := t0.Add(slowFor + time.Second)
	seen := map[string]bool{}
	for n := uint64(1); n <= 4; n++ {
		i, _ := b.Pick(n, later, -1)
		seen[b.Name(i)] = true
		b.Done(i)
	}
	if !seen["slow"] {
		t.Fatal("an estimate older than slowFor still keeps the slow upstream from being asked")
	}

	// Late: honest jitter (one lost hedge per lateShare*2 answers) is not
	// suspect; lateMin lost hedges in a row are.
	h := NewBook([]string{"honest", "staller"}, c)
	for k := 0; k < 3; k++ {
		for range 2 * lateShare {
			h.Answered(0, 10*time.Millisecond, t0)
		}
		if h.LostHedge(0, t0) {
			t.Fatalf("an upstream that lost 1 hedge in %d answers was made suspect", 2*lateShare)
		}
	}
	for k := 1; k <= lateMin; k++ {
		got := h.LostHedge(1, t0.Add(time.Duration(k)*time.Second))
		if got != (k == lateMin) {
			t.Fatalf("lost hedge %d of %d: suspect %v", k, lateMin, got)
		}
	}
}
