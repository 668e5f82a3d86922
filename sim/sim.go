package sim

import (
	"math/rand/v2"
	"time"

	"storesync/actors"
	"storesync/health"
)

// Config is one simulated deployment.
type Config struct {
	Seed uint64
	// The primary: Prefix blocks exist when the run starts (the followers
	// catch up on them), then one block every BlockInterval until Blocks
	// have been made. Sizes are uniform in [BlockSize/2, 3 BlockSize/2].
	Blocks        int
	Prefix        int
	BlockInterval time.Duration
	BlockSize     int
	ProofSize     int
	// The prover proves block n at its timestamp + ProofDelay ± up to
	// ProofJitter (uniform), strictly in order.
	ProofDelay  time.Duration
	ProofJitter time.Duration
	// ProveWork: a proof is applied at least this long after its block
	// commits (the prover's own work: even with no delay, a held call
	// answered at the commit comes without the proof).
	ProveWork time.Duration
	// Followers, each with its upstreams (Upstream.Of: -1 the primary, k
	// follower k: a chain).
	Followers []FollowerSpec
	// ApplyTime is what one ApplyBlock costs a follower; ProofApplyTime one
	// batch of proofs.
	ApplyTime      time.Duration
	ProofApplyTime time.Duration
	// Engine is the engine's configuration (only its timing and bounds are
	// used); health the readiness rules.
	Engine         actors.Config
	Health         health.Config
	HealthInterval time.Duration
	// Settle: what happens before this time (catching up) is not counted in
	// the steady-state figures (lag, calls per block).
	Settle time.Duration
	// Naive runs the design note's loop instead of the engine: every poll
	// interval ask tip+1 with its proof, and proven+1 with its proof.
	Naive bool
}

// FollowerSpec is one follower and how it reaches its upstreams.
type FollowerSpec struct {
	Upstreams []Link
}

// Link is the network path to an upstream, and how that upstream behaves.
type Link struct {
	Name      string
	Of        int           // -1: the primary; k: follower k
	RTT       time.Duration // base round trip
	Jitter    time.Duration // plus uniform [0, Jitter)
	Bandwidth float64       // bytes per second (0: unlimited)
	ErrorRate float64       // a call fails after one round trip
	StallRate float64       // a call is answered only after StallFor more
	StallFor  time.Duration
	LieRate   float64 // a call is answered with a lie (of Lie's kind)
	Lie       Lie
	Outages   [][2]time.Duration // [from, to) since the start: every call fails
	// HoldMax: the store holds a call that asks (storesync-hold) until
	// its block commits or its proof is applied there, up to this long,
	// and its answers say so and give its proven tip; 0: an older store
	// (or one behind a proxy that strips metadata), which does neither.
	HoldMax time.Duration
}

// Lie is a kind of hostile answer.
type Lie int

const (
	LieSignature Lie = iota // a block that fails the cheap checks
	LieState                // a block that passes them but fails ApplyBlock
	LieProof                // a proof that fails verification
	LieEmpty                // claims not to have a block it has
)

// event is something that happens at a time.
type event struct {
	at  time.Duration
	seq uint64
	fn  func()
	t   *timer // or a timer's, with its generation (no closure to allocate)
	gen uint64
}

// queue is a binary min-heap of events by time, then by order of
// scheduling (so that a run is deterministic), held by value.
type queue []event

func (q queue) less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}

func (q *queue) push(e event) {
	*q = append(*q, e)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *queue) pop() event {
	h := *q
	e := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = event{}
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h.less(l, m) {
			m = l
		}
		if r < len(h) && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return e
}

// world is the simulation: the clock, the primary's chain, the followers.
type world struct {
	cfg   Config
	epoch time.Time // wall time of simulated 0 (block timestamps)
	now   time.Duration
	q     queue
	seq   uint64
	rng   *rand.Rand

	// the primary's chain, precomputed: commit (= timestamp) and proof times
	commitAt []time.Duration // by block number; block 0 is genesis at 0
	provenAt []time.Duration
	size     []int
	end      time.Duration // when the last block is made

	followers []*follower
}

func (w *world) at(d time.Duration, fn func()) {
	if d < w.now {
		d = w.now
	}
	w.seq++
	w.q.push(event{at: d, seq: w.seq, fn: fn})
}

func (w *world) wall(d time.Duration) time.Time { return w.epoch.Add(d) }

// primaryTip is the primary's committed tip at d.
func (w *world) primaryTip(d time.Duration) uint64 {
	if d < 0 {
		return 0
	}
	n := uint64(w.cfg.Prefix) + uint64(d/w.cfg.BlockInterval)
	n = min(n, uint64(len(w.commitAt)-1))
	for n > 0 && w.commitAt[n] > d {
		n-- // made late in its interval
	}
	return n
}

func newWorld(cfg Config) *world {
	w := &world{cfg: cfg, epoch: time.Unix(1_700_000_000, 0), rng: rand.New(rand.NewPCG(cfg.Seed, 0x5151))}
	total := cfg.Blocks + 1
	w.commitAt = make([]time.Duration, total)
	w.provenAt = make([]time.Duration, total)
	w.size = make([]int, total)
	for n := 1; n < total; n++ {
		// Prefix blocks were made before the start, one interval apart;
		// each commit is up to a tenth of an interval late (the producer's
		// own work), so that a follower's polls do not fall in step with
		// the blocks and see each at the same phase.
		w.commitAt[n] = time.Duration(n-cfg.Prefix)*cfg.BlockInterval + time.Duration(w.rng.Int64N(int64(cfg.BlockInterval/10)+1))
		w.size[n] = cfg.BlockSize/2 + w.rng.IntN(cfg.BlockSize+1)
		d := cfg.ProofDelay
		if cfg.ProofJitter > 0 {
			d += time.Duration(w.rng.Int64N(int64(2*cfg.ProofJitter))) - cfg.ProofJitter
		}
		w.provenAt[n] = max(w.provenAt[n-1], w.commitAt[n]+max(d, cfg.ProveWork))
	}
	w.end = w.commitAt[total-1]
	return w
}

// Run simulates cfg until every follower holds every block and proof (or a
// deadline well past the last block) and reports what each follower did.
func Run(cfg Config) *Report {
	cfg.defaults()
	w := newWorld(cfg)
	for i, spec := range cfg.Followers {
		w.followers = append(w.followers, newFollower(w, i, spec))
	}
	for _, f := range w.followers {
		f.start()
	}
	deadline := w.end + cfg.ProofDelay + cfg.ProofJitter + time.Minute
	for len(w.q) > 0 {
		e := w.q.pop()
		if e.at > deadline {
			break
		}
		w.now = e.at
		if e.t != nil {
			e.t.run(w, e.gen)
		} else {
			e.fn()
		}
		if w.now >= w.end && w.done() {
			break
		}
	}
	return w.report()
}

const sampleEvery = 100 * time.Millisecond

func (w *world) done() bool {
	last := uint64(len(w.commitAt) - 1)
	for _, f := range w.followers {
		if f.committed < last || f.proven < last {
			return false
		}
	}
	return true
}

func (c *Config) defaults() {
	if c.BlockInterval <= 0 {
		c.BlockInterval = time.Second
	}
	if c.BlockSize <= 0 {
		c.BlockSize = 128 << 10
	}
	if c.ProofSize <= 0 {
		c.ProofSize = 105
	}
	if c.ApplyTime <= 0 {
		c.ApplyTime = 5 * time.Millisecond
	}
	if c.ProofApplyTime <= 0 {
		c.ProofApplyTime = 2 * time.Millisecond
	}
	c.Engine.Defaults()
	if c.Health == (health.Config{}) {
		c.Health = health.DefaultConfig
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = time.Second
	}
}
