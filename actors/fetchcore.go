package actors

import (
	"fmt"
	"slices"
	"time"
)

// stallAfter: deliveries unacknowledged for this long mean a message was
// lost (an actor restarted); the Fetcher then resyncs from the store's tip.
const stallAfter = 10 * time.Second

// FetchCore is the Fetcher's decision logic as a deterministic state
// machine: events and the time in (Step), effects out (Ready). It reads no
// clock, calls no upstream, starts no goroutine; the Fetcher actor carries
// out its effects, and the simulator (package sim) runs the very same core
// against simulated upstreams. It owns the block window and the Book, the
// one model of every upstream's standing, and places the ProofTracker's
// proof asks too, so that both kinds of call learn from each other.
// thread-compatible.
type FetchCore struct {
	cfg   FetchConfig
	win   *Window
	book  *Book
	grace *ProofGrace

	calls    map[uint64]*call
	lastID   uint64
	avoid    map[uint64]int      // block -> upstream that served it bad
	reported []uint64            // UpstreamTip last reported, per upstream
	proofs   []proofAsk          // proof asks waiting for an upstream with room
	asked    map[uint64][]uint64 // proof asks by block: their calls in flight (two once hedged)
	hedgedP  map[uint64]bool     // proof asks hedged since their last call ended
	lastAck  time.Time
	acked    uint64
	wakeAt   time.Time // the timer the shell has armed (zero: none)

	holding, holdingSent bool // last reported in FetchReady.Holding, and whether any was

	ready FetchReady
	out   FetchReady // what Ready returned last (kept to spare an allocation per step)
}

// FetchConfig configures a FetchCore.
type FetchConfig struct {
	Window       WindowConfig
	Upstreams    []string
	FetchTimeout time.Duration
	SuspectFor   time.Duration
	Hedge        bool // ask a second upstream for a late block at the head of the line
	// HoldWait: a probe past the tip to an upstream that holds calls asks
	// to be held this long (capped by the upstream's maximum); 0: never.
	HoldWait time.Duration
	// ProofGrace: the longest a held probe asks its upstream to wait,
	// after the block commits, for its proof (see ProofGrace); 0: never.
	ProofGrace time.Duration
}

// proofAsk is a proof ask waiting for an upstream: after a failed or bad
// answer it goes once more, to another upstream than the one that failed.
type proofAsk struct {
	ProofWant
	notFrom int // -1: any
	tries   int
}

type call struct {
	n        uint64
	upstream int
	launched time.Time
	probe    bool          // past the known tip
	hedge    bool          // a second call for a block whose first is late
	proof    bool          // a proof ask for the ProofTracker
	known    bool          // ... of a proof known to exist
	tries    int           // ... asked this many times before
	wait     time.Duration // held: the upstream was asked to hold it this long (0: not held)
	grace    time.Duration // ... and then this long for the block's proof (0: none)
	// knownAt: when what a held call waits for was first known to exist
	// (another upstream served the block, a tip seen moved the edge past
	// it, an answer showed the proof); from then it is judged late like
	// any call.
	knownAt time.Time
}

// Call is an effect: ask upstream Upstream for block N with its proof,
// within Timeout. ID names it in CallDone and Cancels.
type Call struct {
	ID       uint64
	N        uint64
	Upstream int
	Timeout  time.Duration
	Proof    bool // a proof ask: verify the proof against the block committed here
	Hedge    bool // a second call for a block whose first call is late
	// Hold asks the upstream to hold the call, for at most Wait, until
	// block N commits (HoldBlock) or its proof is applied (HoldProof);
	// "": no hold. Timeout includes the wait.
	Hold string
	Wait time.Duration
	// Grace: with HoldBlock, once the block commits the upstream waits up
	// to this long more for its proof (0: it answers at the commit).
	Grace time.Duration
}

// ProofWant asks the FetchCore to fetch block N for its proof.
type ProofWant struct {
	N     uint64
	Known bool // the proof is known to exist upstream (one that came later was seen)
}

// Outcome is how a call ended.
type Outcome int

const (
	Served   Outcome = iota // a block that passed the cheap checks (decode, number, signature)
	Empty                   // no such block yet (past the upstream's tip)
	Bad                     // it failed the cheap checks
	Failed                  // the call failed
	TimedOut                // the call ran out of its timeout
)

// ProofAnswer is an effect: the outcome of a proof ask, for the
// ProofTracker.
type ProofAnswer struct {
	N        uint64
	Known    bool
	Outcome  Outcome
	Proof    any    // the verified proof, nil if none came
	BadProof string // a proof came and failed verification
	Size     int    // block bytes fetched again for it
	Upstream int
	// UpstreamProven: the upstream's proven tip, as its answer said (0:
	// unknown).
	UpstreamProven uint64
}

// TipReport is an effect: upstream Upstream holds block Tip (higher than
// reported before).
type TipReport struct {
	Upstream int
	Tip      uint64
}

// LogLine is an effect: something an operator should read, once per
// distinct problem rather than once per retry.
type LogLine struct {
	Warn     bool
	Msg      string
	Upstream int // -1: none
	N        uint64
	Detail   string
}

// Mark is an effect: an event on block N's journey (a retry, a rejection).
type Mark struct {
	N        uint64
	What     string
	Upstream int
	Reason   string
}

// FetchReady holds the effects of the steps since the last Ready.
type FetchReady struct {
	Calls        []Call
	Cancels      []uint64 // calls whose answers are no longer wanted
	Deliveries   []Delivery
	ProofAnswers []ProofAnswer
	Tips         []TipReport
	Logs         []LogLine
	Marks        []Mark
	Suspected    []int // upstreams newly marked suspect
	// HoldingChanged: whether an upstream holds proof asks changed to
	// Holding (for the ProofTracker: step ProofHolding).
	HoldingChanged, Holding bool
	Stalled                 bool      // deliveries unacknowledged for stallAfter: step Resync from the store
	WakeAt                  time.Time // move the timer to this (zero: leave it; a spurious Tick is harmless)
}

// NewFetchCore starts delivering from next (the store's tip + 1) at now.
func NewFetchCore(cfg FetchConfig, next uint64, now time.Time) *FetchCore {
	c := &FetchCore{cfg: cfg, win: NewWindow(cfg.Window, next), calls: map[uint64]*call{},
		avoid: map[uint64]int{}, reported: make([]uint64, len(cfg.Upstreams)), asked: map[uint64][]uint64{},
		hedgedP: map[uint64]bool{}, grace: NewProofGrace(cfg.ProofGrace),
		lastAck: now, acked: next - 1}
	c.book = NewBook(cfg.Upstreams, BookConfig{PollInterval: cfg.Window.PollInterval, RetryInitial: cfg.Window.RetryInitial,
		RetryMax: cfg.Window.RetryMax, SuspectFor: cfg.SuspectFor, FetchTimeout: cfg.FetchTimeout,
		MaxInFlight: cfg.Window.MaxBlocks, Seed: cfg.Window.Seed})
	return c
}

// Events of the FetchCore.
type (
	// Tick: a timer fell due (or nothing happened; it is always safe).
	Tick struct{}
	// CallDone: call ID ended.
	CallDone struct {
		ID        uint64
		Outcome   Outcome
		Size      int       // block bytes received
		Proof     bool      // a proof came with the block and verified
		BadProof  string    // a proof came and failed verification
		BlockTime time.Time // the block's timestamp (Served)
		Payload   any       // the block (a fetch) or the proof (a proof ask), for the shell
		Problem   string    // why, for Bad, Failed, TimedOut
		Took      time.Duration
		// HoldKnown: the answer said whether its upstream holds calls
		// (HoldMax, its longest wait; 0: it does not) and its proven tip
		// (UpstreamProven). Unknown for a failed call, or an Upstream that
		// cannot tell.
		HoldKnown      bool
		HoldMax        time.Duration
		UpstreamProven uint64
	}
	// BlockAcked: the Applier committed up to Tip.
	BlockAcked struct{ Tip uint64 }
	// BlockRejected: block N from Upstream failed validation.
	BlockRejected struct {
		N        uint64
		Upstream int
		Why      string
	}
	// ResyncFrom: deliver from Next (the Applier restarted or saw a gap).
	ResyncFrom struct{ Next uint64 }
	// LinkBack: upstream's connection is ready again after a failure.
	LinkBack struct{ Upstream int }
	// ProofWanted: the ProofTracker asks for these proofs.
	ProofWanted struct{ Wants []ProofWant }
	// TipSeen: upstream says it holds Tip (its latest header, counted by
	// the health poller; checked against a signed block only when it is
	// more than max-lag ahead).
	TipSeen struct {
		Upstream int
		Tip      uint64
	}
)

// Wanted reports whether call id's answer is still wanted (not cancelled,
// not from before a reset).
func (c *FetchCore) Wanted(id uint64) bool { return c.calls[id] != nil }

// ProofCall reports whether call id is a proof ask.
func (c *FetchCore) ProofCall(id uint64) bool { k := c.calls[id]; return k != nil && k.proof }

// Book is the core's model of its upstreams (read only to callers).
func (c *FetchCore) Book() *Book { return c.book }

// Window is the core's block window (read only to callers).
func (c *FetchCore) Window() *Window { return c.win }

// Step applies one event at now, then does everything due: deliver, hedge,
// launch, place proof asks, arm the next wake-up.
func (c *FetchCore) Step(now time.Time, ev any) {
	switch e := ev.(type) {
	case Tick:
		if !c.wakeAt.After(now) {
			c.wakeAt = time.Time{}
		}
	case CallDone:
		c.done(now, e)
	case BlockAcked:
		c.cancel(c.win.Acked(e.Tip))
		if e.Tip > c.acked {
			c.acked, c.lastAck = e.Tip, now
		}
	case BlockRejected:
		if e.Upstream >= 0 {
			c.suspect(e.Upstream, now, e.Why)
			c.avoid[e.N] = e.Upstream
		}
		c.cancel(c.win.Reset(e.N)) // the shell logs it, with the check that failed
	case ResyncFrom:
		if e.Next != c.win.Next() {
			c.cancel(c.win.Reset(e.Next))
			c.lastAck = now
		}
	case LinkBack:
		if c.book.Reconnected(e.Upstream) {
			c.win.RetryNow(now)
			c.log(false, "upstream connection is back: asking it again now", e.Upstream, 0, "")
		}
	case ProofWanted:
		for _, w := range e.Wants {
			if _, ok := c.asked[w.N]; !ok {
				c.asked[w.N] = nil
				c.proofs = append(c.proofs, proofAsk{ProofWant: w, notFrom: -1})
			}
		}
	case TipSeen:
		// Only the window moves: a tip the poller counted need not be
		// backed by a signed block (a claim within max-lag is taken as it
		// is), so it must not make the Book prefer that upstream or retry
		// it after an honest one's empty answer. A false claim costs at
		// most a window of empty answers once.
		c.book.Claims(e.Upstream, e.Tip)
		c.win.TipSeen(e.Tip)
	}
	c.step(now)
}

// Ready returns the effects since the last call and clears them. The
// slices are reused by the next step: carry them out before stepping again.
func (c *FetchCore) Ready() *FetchReady {
	o := c.out
	c.out = c.ready
	c.ready = FetchReady{Calls: o.Calls[:0], Cancels: o.Cancels[:0], Deliveries: o.Deliveries[:0],
		ProofAnswers: o.ProofAnswers[:0], Tips: o.Tips[:0], Logs: o.Logs[:0], Marks: o.Marks[:0],
		Suspected: o.Suspected[:0]}
	return &c.out
}

func (c *FetchCore) step(now time.Time) {
	// Reported once at the start too: a restarted Fetcher must not leave
	// the ProofTracker believing in holds that are gone.
	if h := c.cfg.HoldWait > 0 && c.book.AnyHolds(); h != c.holding || !c.holdingSent {
		c.holding, c.holdingSent = h, true
		c.ready.HoldingChanged, c.ready.Holding = true, h
	}
	c.ready.Deliveries = c.win.Deliverable(c.ready.Deliveries)
	if c.win.Outstanding() > 0 && !now.Before(c.lastAck.Add(stallAfter)) {
		c.ready.Stalled = true
		c.lastAck = now
	}
	c.placeProofs(now)
	c.win.Launch(now, func(n uint64, probe bool) pick { return c.launch(n, probe, now) })
	hedgeAt := c.hedge(now)
	next, ok := c.win.NextWake()
	if !hedgeAt.IsZero() && (!ok || hedgeAt.Before(next)) {
		next, ok = hedgeAt, true
	}
	if len(c.proofs) > 0 {
		if t := c.book.NextChance(c.proofs[0].N, now); t.After(now) && (!ok || t.Before(next)) {
			next, ok = t, true
		}
	}
	if c.win.Outstanding() > 0 {
		if t := c.lastAck.Add(stallAfter); !ok || t.Before(next) {
			next, ok = t, true
		}
	}
	// The timer always stands at the earliest thing due, moved later too,
	// so that a wake-up that is no longer needed (the call it would hedge
	// was answered) costs the shell nothing.
	if ok && !next.Equal(c.wakeAt) {
		c.wakeAt = next
		c.ready.WakeAt = next
	}
}

func (c *FetchCore) launch(n uint64, probe bool, now time.Time) pick {
	var i int
	var ok bool
	if probe {
		i, ok = c.book.PickProbe(n, now)
	} else {
		avoid, bad := c.avoid[n]
		if !bad {
			avoid = -1
		}
		i, ok = c.book.Pick(n, now, avoid)
	}
	switch {
	case ok:
		k := call{probe: probe}
		if probe {
			// Past the tip, an upstream that holds calls is asked to hold
			// this one until the block commits: it comes then, not at the
			// next poll, and no empty answers go back and forth meanwhile.
			k.wait = min(c.cfg.HoldWait, c.book.HoldMax(i))
			if k.wait > 0 {
				k.grace = c.grace.For(n)
			}
		}
		return pick{id: c.start(n, i, now, k, false), started: true}
	case c.book.AllLack(n, now):
		return pick{pastTip: true}
	case c.busy(n, now):
		return pick{} // an upstream has no room: wait for a call to end
	default:
		return pick{retryAt: c.book.NextChance(n, now)}
	}
}

// busy: an upstream that could be asked for n is at its limit.
func (c *FetchCore) busy(n uint64, now time.Time) bool {
	for _, s := range c.book.ups {
		if !s.lacksRecently(n, now, c.book.cfg.PollInterval) && !now.Before(s.downUntil) && s.inFlight >= s.limit {
			return true
		}
	}
	return false
}

func (c *FetchCore) start(n uint64, i int, now time.Time, k call, hedge bool) uint64 {
	c.lastID++
	k.n, k.upstream, k.launched, k.hedge = n, i, now, hedge
	c.calls[c.lastID] = &k
	cl := Call{ID: c.lastID, N: n, Upstream: i, Timeout: c.cfg.FetchTimeout + k.wait, Proof: k.proof, Hedge: hedge, Wait: k.wait}
	switch {
	case k.wait > 0 && k.proof:
		cl.Hold = HoldProof
	case k.wait > 0:
		cl.Hold, cl.Grace = HoldBlock, k.grace
	}
	c.ready.Calls = append(c.ready.Calls, cl)
	return c.lastID
}

// hedge asks a second upstream for each block at the head of the line
// (the Applier is about to need it) whose call runs past what its
// upstream's answers take: one slow or stalled call must not hold every
// block behind it for a whole fetch timeout. It returns when the next such
// call turns late (zero: none).
func (c *FetchCore) hedge(now time.Time) time.Time {
	if !c.cfg.Hedge || c.book.Len() < 2 {
		return time.Time{}
	}
	var next time.Time
	// late hedges block n's call first if it is late, or returns when it
	// will be.
	late := func(n uint64, first *call, k call) uint64 {
		since := first.launched
		if first.wait > 0 {
			since = first.knownAt
		}
		at := since.Add(c.book.HedgeAfter(first.upstream))
		if now.Before(at) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			return 0
		}
		i, ok := c.book.PickOther(n, now, first.upstream)
		if !ok {
			// Nobody else may be asked now (each lacks n, or is backed
			// off): try when one may.
			if at := c.book.NextChanceOther(n, now, first.upstream); at.After(now) && (next.IsZero() || at.Before(next)) {
				next = at
			}
			return 0
		}
		c.ready.Marks = append(c.ready.Marks, Mark{N: n, What: "hedged", Upstream: i,
			Reason: fmt.Sprintf("%s had not answered after %s", c.book.Name(first.upstream), now.Sub(since))})
		if first.wait > 0 && !k.proof {
			// The hedge of a held probe is held too where it can be: the
			// block may not exist yet after all. (A held proof ask is
			// hedged only once its proof is known to exist.)
			k.wait = min(c.cfg.HoldWait, c.book.HoldMax(i))
		}
		return c.start(n, i, now, k, true)
	}
	// Proof asks, in block order (not the map's: the simulator must be
	// deterministic), then the blocks at the head of the line.
	var asked []uint64
	proofTip := c.book.ProofTip()
	for n, ids := range c.asked {
		if len(ids) != 1 || c.hedgedP[n] || c.calls[ids[0]] == nil {
			continue
		}
		// A held ask waits for a proof that may not exist yet: its time
		// says nothing of its upstream, until the proof is known.
		if k := c.calls[ids[0]]; k.wait > 0 && !c.known(k, n <= proofTip, now) {
			continue
		}
		asked = append(asked, n)
	}
	slices.Sort(asked)
	for _, n := range asked {
		first := c.calls[c.asked[n][0]]
		if id := late(n, first, call{proof: true, known: first.known, tries: first.tries}); id != 0 {
			c.hedgedP[n] = true
			c.asked[n] = append(c.asked[n], id)
		}
	}
	for n := c.win.next; n < c.win.next+uint64(c.win.credits); n++ {
		sl := c.win.slots[n]
		if sl == nil || sl.state != inFlight || sl.hedged || sl.calls != 1 || c.calls[sl.ids[0]] == nil {
			continue
		}
		first := c.calls[sl.ids[0]]
		if first.wait > 0 {
			// Held, for a block not known to exist yet: it is meant to
			// take long. Once the block is known (another upstream served
			// it, a tip seen moved the edge past it, or the chain's own
			// cadence says it is two intervals overdue) an upstream that
			// does not answer soon after is as late as any.
			exists := n < c.win.edge || c.book.SomeoneHas(n, first.upstream)
			if due := first.launched.Add(2 * c.win.interval); c.win.interval > 0 && !exists {
				if !now.Before(due) {
					exists = true
				} else if next.IsZero() || due.Before(next) {
					next = due
				}
			}
			if !c.known(first, exists, now) {
				continue
			}
		}
		if id := late(n, first, call{probe: first.probe}); id != 0 {
			c.win.Hedged(n, id)
		}
	}
	return next
}

// placeProofs starts the proof asks waiting, in order, while upstreams
// have room.
func (c *FetchCore) placeProofs(now time.Time) {
	k := 0
	for ; k < len(c.proofs); k++ {
		w := c.proofs[k]
		pick := c.book.Pick
		if !w.Known && c.cfg.HoldWait > 0 {
			pick = c.book.PickHolding
		}
		i, ok := pick(w.N, now, w.notFrom)
		if !ok {
			break
		}
		k := call{proof: true, known: w.Known, tries: w.tries}
		if !w.Known {
			// Not known to exist yet: an upstream that holds calls answers
			// when the proof is applied there, not "none yet" now.
			k.wait = min(c.cfg.HoldWait, c.book.HoldMax(i))
		}
		c.asked[w.N] = append(c.asked[w.N], c.start(w.N, i, now, k, false))
	}
	c.proofs = append(c.proofs[:0], c.proofs[k:]...)
}

// cancel drops calls whose answers are no longer wanted.
func (c *FetchCore) cancel(ids []uint64) {
	for _, id := range ids {
		if k := c.calls[id]; k != nil {
			c.book.Done(k.upstream)
			delete(c.calls, id)
			c.ready.Cancels = append(c.ready.Cancels, id)
		}
	}
}

func (c *FetchCore) done(now time.Time, e CallDone) {
	k := c.calls[e.ID]
	if k == nil {
		return // cancelled, or from before a reset
	}
	delete(c.calls, e.ID)
	u := k.upstream
	c.book.Done(u)
	if e.HoldKnown {
		c.book.SetHoldMax(u, e.HoldMax)
		if e.UpstreamProven > 0 {
			c.book.HasProof(u, e.UpstreamProven)
		}
	}
	if k.proof {
		c.proofDone(now, k, e)
		return
	}
	n := k.n
	switch e.Outcome {
	case Failed, TimedOut:
		c.book.Failed(u, now)
		what := fmt.Sprintf("GetBlockByNumber failed: %s", e.Problem)
		if e.Outcome == TimedOut {
			// A stalled or trickling answer costs the block a whole
			// timeout; the backoff alone ends at the upstream's next good
			// answer, so one that stalls only some calls would keep being
			// asked first.
			c.book.cut(u, k.launched, now, true)
			what = fmt.Sprintf("GetBlockByNumber failed, marked suspect: timed out after %s: %s", c.cfg.FetchTimeout, e.Problem)
			c.suspect(u, now, fmt.Sprintf("block %d timed out after %s", n, c.cfg.FetchTimeout))
		}
		c.problem(u, n, what)
		// Fail over at once when another upstream may be asked; back off
		// only when none can.
		retry := false
		if c.book.Reachable(n, now, u) {
			c.avoid[n] = u
			retry = c.win.Retry(n, e.ID, now)
		} else {
			retry = c.win.Failed(n, e.ID, now)
		}
		if retry {
			c.ready.Marks = append(c.ready.Marks, Mark{N: n, What: "retry", Upstream: u, Reason: e.Problem})
		}
	case Bad:
		c.book.Answered(u, c.took(k, e), now) // it answers, badly: the problem stays
		c.problem(u, n, fmt.Sprintf("served a bad block, marked suspect: %s", e.Problem))
		c.suspect(u, now, fmt.Sprintf("bad block %d: %s", n, e.Problem))
		c.avoid[n] = u
		if c.win.Retry(n, e.ID, now) {
			c.ready.Marks = append(c.ready.Marks, Mark{N: n, What: "rejected", Upstream: u, Reason: e.Problem})
		}
	case Empty:
		// A held call that waited its wait says as much as a poll, and
		// the next held call goes at once; one answered sooner was not
		// held (the upstream's pool was full, or it is shutting down):
		// the next probe waits a poll interval.
		held := k.wait > 0 && e.Took >= k.wait*9/10
		c.answered(u, n, c.took(k, e), now)
		// A plain call's answer that says the store holds (the first
		// ones, before the Book knew): the next probe goes at once, held.
		next := held || k.probe && !k.hedge && k.wait == 0 && c.cfg.HoldWait > 0 && c.book.HoldMax(u) > 0
		if !next {
			// Marked lacking, the upstream is not probed again for half a
			// poll interval; one to be probed at once must not be, or the
			// probe would find nobody to ask and wake the core at once,
			// again and again.
			c.book.Lacks(u, n, now)
		}
		defer func() {
			if next {
				c.win.ProbeNow(now)
			}
		}()
		// One upstream's empty answer at the edge is the tip (the probe
		// went to the one most likely to have it), unless another is known
		// to hold n; so is a hedge's, the first call being late (waiting
		// for the late one to answer would make every hedge of a block
		// past the tip come back empty again and again). Below the edge,
		// every upstream is asked first.
		if c.book.SomeoneHas(n, u) || (!k.probe && !k.hedge && !c.book.AllLack(n, now)) {
			c.win.Missed(n, e.ID, now)
		} else {
			others, _ := c.win.Empty(n, e.ID, now)
			c.cancel(others)
		}
	case Served:
		if e.BadProof == "" {
			c.answered(u, n, c.took(k, e), now)
		} else {
			c.book.Answered(u, c.took(k, e), now)
			c.problem(u, n, fmt.Sprintf("served a bad proof with block %d, marked suspect: %s", n, e.BadProof))
			c.suspect(u, now, fmt.Sprintf("bad proof of block %d: %s", n, e.BadProof))
		}
		if e.Proof {
			c.book.HasProof(u, n)
		}
		c.book.Has(u, n)
		if k.wait == 0 && e.Took > c.cfg.FetchTimeout/2 && c.book.cut(u, k.launched, now, false) {
			c.log(false, "calls in flight cut: fetches were slow", u, n, fmt.Sprintf("limit %d", c.book.ups[u].limit))
		} else {
			c.book.grow(u)
		}
		losers, ok := c.win.Fetched(n, e.ID, e.Size, u, e.BlockTime, e.Payload, now)
		c.lost(losers, n, now)
		c.cancel(losers)
		if ok {
			delete(c.avoid, n)
		}
		if k.grace > 0 {
			c.grace.BlockCame(n, e.Proof)
		}
		if k.wait > 0 && c.book.HoldMax(u) > 0 {
			// The block a held probe waited for: hold one for the next.
			c.win.ProbeNow(now)
		}
		c.report(u)
	}
}

// known notes when what held call k waits for is first known to exist,
// and reports whether it is.
func (c *FetchCore) known(k *call, exists bool, now time.Time) bool {
	if exists && k.knownAt.IsZero() {
		k.knownAt = now
	}
	return !k.knownAt.IsZero()
}

// took is the round trip a call's answer measures: none for a held call
// (its time is the wait for the block), which must not teach the Book
// that its upstream is slow, nor delay the hedges of its other calls.
func (c *FetchCore) took(k *call, e CallDone) time.Duration {
	if k.wait > 0 {
		return -1
	}
	return e.Took
}

func (c *FetchCore) proofDone(now time.Time, k *call, e CallDone) {
	u, n := k.upstream, k.n
	ids := c.asked[n]
	for j, id := range ids {
		if id == e.ID {
			ids = append(ids[:j:j], ids[j+1:]...)
			break
		}
	}
	c.asked[n] = ids
	a := ProofAnswer{N: n, Known: k.known, Outcome: e.Outcome, Upstream: u, Size: e.Size, BadProof: e.BadProof, UpstreamProven: e.UpstreamProven}
	if e.Outcome == Served && k.wait > 0 && !e.Proof && e.BadProof == "" && e.Took >= k.wait*9/10 {
		// Held its whole wait, and no proof yet: no news, not a miss. It is
		// asked again at once, as one ask (c.asked keeps the block until
		// an answer goes to the ProofTracker).
		c.answered(u, n, -1, now)
		c.book.Has(u, n)
		if len(ids) == 0 {
			c.proofs = append(c.proofs, proofAsk{ProofWant: ProofWant{N: n, Known: k.known}, notFrom: -1, tries: k.tries})
		}
		return
	}
	unanswered := false // no word on whether the proof exists
	switch e.Outcome {
	case Failed, TimedOut:
		c.book.Failed(u, now)
		c.problem(u, n, fmt.Sprintf("GetBlockByNumber failed: %s", e.Problem))
		unanswered = true
	case Bad:
		c.book.Answered(u, c.took(k, e), now)
		c.problem(u, n, fmt.Sprintf("served a bad block, marked suspect: %s", e.Problem))
		c.suspect(u, now, fmt.Sprintf("bad block %d: %s", n, e.Problem))
		unanswered = true
	case Empty:
		// It lacks a block committed here: a follower behind, or a liar.
		c.answered(u, n, c.took(k, e), now)
		c.book.Lacks(u, n, now)
		unanswered = true
	default:
		if e.BadProof == "" {
			c.answered(u, n, c.took(k, e), now)
		} else {
			c.book.Answered(u, c.took(k, e), now)
		}
		c.book.Has(u, n)
		switch {
		case e.BadProof != "":
			c.problem(u, n, fmt.Sprintf("served a bad proof of block %d, marked suspect: %s", n, e.BadProof))
			c.suspect(u, now, fmt.Sprintf("bad proof of block %d: %s", n, e.BadProof))
			unanswered = true // the proof exists; ask an honest upstream
		case e.Proof:
			c.book.HasProof(u, n)
			a.Proof = e.Payload
			if k.wait > 0 {
				c.grace.ProofCame(n, e.Took, c.book.RTT(u))
			}
		}
	}
	if unanswered && len(ids) > 0 {
		return // the other call still in flight answers for it (and is not hedged again)
	}
	delete(c.hedgedP, n)
	if unanswered && k.tries == 0 && c.book.Len() > 1 {
		c.proofs = append(c.proofs, proofAsk{ProofWant: ProofWant{N: n, Known: k.known}, notFrom: u, tries: 1})
		return
	}
	if a.Proof != nil {
		c.lost(ids, n, now)
	}
	c.cancel(ids) // an answer: the hedge still in flight is not needed
	delete(c.asked, n)
	c.ready.ProofAnswers = append(c.ready.ProofAnswers, a)
}

// lost records the calls that another upstream's answer made needless,
// still running: each upstream that was that late often enough is suspect.
func (c *FetchCore) lost(ids []uint64, n uint64, now time.Time) {
	for _, id := range ids {
		l := c.calls[id]
		if l == nil {
			continue
		}
		running := now.Sub(l.launched)
		c.book.Late(l.upstream, running, now)
		if c.book.LostHedge(l.upstream, now) {
			why := fmt.Sprintf("late: another upstream answered first for %d of its calls within %s", lateMin, lateWindow)
			c.problem(l.upstream, n, "answers late, marked suspect: "+why)
			c.suspect(l.upstream, now, why)
		}
	}
}

// answered: upstream u answered well; a problem it had is over.
func (c *FetchCore) answered(u int, n uint64, took time.Duration, now time.Time) {
	c.book.Answered(u, took, now)
	if c.book.Recovered(u) {
		c.log(false, "upstream recovered", u, n, "")
	}
}

// problem notes what went wrong with upstream u, logging it once per
// distinct problem.
func (c *FetchCore) problem(u int, n uint64, what string) {
	if c.book.ProblemOf(u) != what {
		c.book.Problem(u, what)
		c.log(true, "upstream problem", u, n, what)
	}
}

func (c *FetchCore) suspect(u int, now time.Time, why string) {
	c.book.Suspect(u, now, why)
	c.ready.Suspected = append(c.ready.Suspected, u)
}

func (c *FetchCore) report(u int) {
	if tip := c.book.Tip(u); tip > c.reported[u] {
		c.reported[u] = tip
		c.ready.Tips = append(c.ready.Tips, TipReport{Upstream: u, Tip: tip})
	}
}

func (c *FetchCore) log(warn bool, msg string, u int, n uint64, detail string) {
	c.ready.Logs = append(c.ready.Logs, LogLine{Warn: warn, Msg: msg, Upstream: u, N: n, Detail: detail})
}
