package actors

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"storesync/messages"
	"storesync/otel"
	"storesync/store"
)

// Config configures the engine.
type Config struct {
	Store     *store.Store
	Upstreams []Upstream

	FetchWindow      int   // blocks in flight or held, at most
	FetchWindowBytes int64 // bytes held or expected, at most
	Credits          int   // deliveries the Applier may hold unacknowledged
	// A group of consecutive delivered blocks is committed at once (see
	// ApplyCore): at most GroupBlocks (1: every block alone, as it is
	// delivered), GroupBytes, the blocks the last groups' rate says fit
	// in GroupTime, and the Credits (the Applier holds no more).
	GroupBlocks int
	GroupBytes  int
	GroupTime   time.Duration
	// NoOverlap stages (validates) the next group only once the one
	// before has committed; by default it is staged while that one
	// commits, on the state it leaves.
	NoOverlap     bool
	FetchTimeout  time.Duration // per GetBlockByNumber call
	PollInterval  time.Duration // asking for the next block once caught up
	RetryInitial  time.Duration // first retry delay after a failed fetch
	RetryMax      time.Duration // cap on retry delays
	SuspectFor    time.Duration // how long an upstream that served a bad block is avoided
	ProofMaxWait  time.Duration // cap on the wait between asks for a proof that is late
	ProofMaxDelay time.Duration // longest proof delay the schedule learns
	NoHedge       bool          // never ask a second upstream for a late block
	// HoldWait is how long a caught-up follower asks an upstream that
	// holds calls (api.HoldKey) to hold its probe for the next block;
	// NoHold never asks (it polls every PollInterval, as it must with an
	// upstream that does not hold).
	HoldWait time.Duration
	NoHold   bool
	// ProofGrace: where the upstream has been seen to prove blocks within
	// this long of committing them, a held probe asks it to wait this
	// long after the commit for the proof (api.HoldGraceKey), so block and
	// proof come in one answer instead of the block's bytes twice; at
	// most this much lag, and only while it works (ProofGrace). Negative:
	// never.
	ProofGrace time.Duration
	Restart    RestartPolicy

	Log     *slog.Logger
	Metrics *otel.Metrics        // nil: none
	Tracing trace.TracerProvider // nil: no traces
	Hooks   *Hooks               // tests only
}

// DefaultConfig holds the engine's defaults, the one place the follower's
// flags take theirs from. ProofMaxWait, when unset, is 16 poll intervals.
var DefaultConfig = Config{
	// A window of 256 keeps small blocks coming at 5,000 a second over a
	// 50 ms round trip; 128 credits let a full group (GroupBlocks) wait
	// behind one committing, so that it is validated meanwhile.
	FetchWindow:      256,
	FetchWindowBytes: 64 << 20,
	Credits:          128,
	GroupBlocks:      64,
	GroupBytes:       16 << 20,
	GroupTime:        500 * time.Millisecond,
	FetchTimeout:     10 * time.Second,
	PollInterval:     200 * time.Millisecond,
	RetryInitial:     100 * time.Millisecond,
	RetryMax:         5 * time.Second,
	SuspectFor:       time.Minute,
	// Proofs of the real chain come about 30 s after their blocks; a
	// stalled prover can take minutes.
	ProofMaxDelay: 5 * time.Minute,
	// Long against any block interval and proof delay (a held call ends
	// with what it waits for; one that runs out costs a block's bytes
	// again), and the read API's default maximum.
	HoldWait: 30 * time.Second,
	// A prover that keeps up with the chain applies a block's proof a few
	// milliseconds after the block; below the hedges' 25 ms floor, so a
	// grace never looks like a stall.
	ProofGrace: 20 * time.Millisecond,
	Restart:    DefaultRestartPolicy,
}

// Defaults fills unset fields from DefaultConfig.
func (c *Config) Defaults() {
	d := DefaultConfig
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.FetchWindow, d.FetchWindow)
	if c.FetchWindowBytes <= 0 {
		c.FetchWindowBytes = d.FetchWindowBytes
	}
	setInt(&c.Credits, d.Credits)
	setInt(&c.GroupBlocks, d.GroupBlocks)
	setInt(&c.GroupBytes, d.GroupBytes)
	set(&c.GroupTime, d.GroupTime)
	set(&c.FetchTimeout, d.FetchTimeout)
	set(&c.PollInterval, d.PollInterval)
	set(&c.RetryInitial, d.RetryInitial)
	set(&c.RetryMax, d.RetryMax)
	set(&c.SuspectFor, d.SuspectFor)
	set(&c.ProofMaxWait, 16*c.PollInterval)
	set(&c.ProofMaxDelay, d.ProofMaxDelay)
	set(&c.HoldWait, d.HoldWait)
	if c.ProofGrace == 0 {
		c.ProofGrace = d.ProofGrace
	}
	if c.Restart == (RestartPolicy{}) {
		c.Restart = d.Restart
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// FetchConfig is the FetchCore's part of the configuration (the shell's,
// and the simulator's: one translation for both).
func (c *Config) FetchConfig(upstreams []string, seed uint64) FetchConfig {
	return FetchConfig{
		Window: WindowConfig{MaxBlocks: c.FetchWindow, MaxBytes: c.FetchWindowBytes, Credits: c.Credits,
			PollInterval: c.PollInterval, RetryInitial: c.RetryInitial, RetryMax: c.RetryMax, Seed: seed},
		Upstreams: upstreams, FetchTimeout: c.FetchTimeout, SuspectFor: c.SuspectFor, Hedge: !c.NoHedge,
		HoldWait: holdWait(c), ProofGrace: max(c.ProofGrace, 0),
	}
}

func holdWait(c *Config) time.Duration {
	if c.NoHold {
		return 0
	}
	return c.HoldWait
}

// ProofConfig is the ProofCore's part of the configuration.
func (c *Config) ProofConfig() ProofConfig {
	return ProofConfig{MinWait: c.PollInterval, MaxWait: c.ProofMaxWait, MaxDelay: c.ProofMaxDelay, AskTimeout: 2 * c.FetchTimeout}
}

// ApplyConfig is the ApplyCore's part of the configuration.
func (c *Config) ApplyConfig() ApplyConfig {
	return ApplyConfig{RetryInitial: c.RetryInitial, RetryMax: c.RetryMax, GroupBlocks: c.GroupBlocks, GroupBytes: c.GroupBytes, GroupTime: c.GroupTime, NoOverlap: c.NoOverlap}
}

// Hooks let tests inject failures and watch lifecycles. Receive runs
// before an actor handles a user message (a panic there is a failure of that
// actor); Started runs each time an actor starts or restarts.
type Hooks struct {
	Receive func(actor string, msg any)
	Started func(actor string)
}

func (h *Hooks) receive(name string, msg any) {
	if h != nil && h.Receive != nil {
		h.Receive(name, msg)
	}
}

func (h *Hooks) started(name string) {
	if h != nil && h.Started != nil {
		h.Started(name)
	}
}

// Actor names, also the last element of their PIDs.
const (
	SupervisorName   = "supervisor"
	FetcherName      = "fetcher"
	ApplierName      = "applier"
	ProofTrackerName = "prooftracker"
)

// View is the follower's view of its upstreams' tips, owned by the
// Supervisor. The local tips are the store's (Store.Tips), the one source
// of truth.
type View struct {
	UpstreamTip uint64            // highest block any upstream served
	Upstreams   map[string]uint64 // per upstream
	Restarts    map[string]int    // per actor; filled by View from the strategies' counters
	Updated     time.Time
}

// Engine is a running sync engine.
type Engine struct {
	system     *actor.ActorSystem
	supervisor *actor.PID
	view       atomic.Pointer[View]
	stats      Stats
	restarts   [4]atomic.Int64 // per actor, in actorNames order; counted by the strategies
	journeys   *journeys
	storage    atomic.Pointer[string]                  // why the Applier cannot write, while it cannot (applier.go)
	notes      atomic.Pointer[map[string]UpstreamNote] // published by the Fetcher from its Book (notes.go)

	fatalOnce sync.Once
	fatal     chan error
}

// Stats are the engine's counters, read by metrics. thread-safe.
type Stats struct {
	FetchedBytes   atomic.Int64 // block and proof bytes received, by every call
	UsefulBytes    atomic.Int64 // the first copy of each block delivered, and each proof verified
	ProofBytes     atomic.Int64 // proof bytes received and verified
	RedundantBytes atomic.Int64 // block bytes received again for a proof, by a hedge that lost, or after a reset
	Rejected       atomic.Int64 // blocks that failed validation
	FetchErrors    atomic.Int64 // calls to an upstream that failed or timed out
	Calls          atomic.Int64 // calls to upstreams (block fetches, probes and proof asks), ended
	// FetchLimit is how many calls the Fetcher allows in flight now: the
	// window, or less on a link that was too slow for it (Window.limit).
	FetchLimit atomic.Int64
	// Applying is the time (ns) the Applier spent in ApplyBlock: over a
	// catch-up's wall time, how busy the apply path was (below 1: it
	// waited for blocks).
	Applying atomic.Int64
	// GroupSizes[k] counts the groups of k blocks committed (the last
	// counts every group of MaxGroupStat blocks or more).
	GroupSizes [MaxGroupStat + 1]atomic.Int64
}

// MaxGroupStat is the largest group size Stats.GroupSizes tells apart.
const MaxGroupStat = 256

// MedianGroup returns the median size of the groups committed, or 0 if none
// was. thread-safe.
func (s *Stats) MedianGroup() int {
	var total int64
	for i := range s.GroupSizes {
		total += s.GroupSizes[i].Load()
	}
	if total == 0 {
		return 0
	}
	var seen int64
	for k := range s.GroupSizes {
		if seen += s.GroupSizes[k].Load(); 2*seen >= total {
			return k
		}
	}
	return MaxGroupStat
}

// ErrFatal wraps the error the engine stops with.
var ErrFatal = errors.New("sync engine stopped")

// Start spawns the Supervisor (which spawns the rest) on system.
func Start(system *actor.ActorSystem, cfg Config) (*Engine, error) {
	cfg.Defaults()
	if cfg.Store == nil || len(cfg.Upstreams) == 0 {
		return nil, fmt.Errorf("start engine: a store and at least one upstream are needed")
	}
	e := &Engine{system: system, fatal: make(chan error, 1), journeys: newJourneys(cfg.Tracing)}
	e.view.Store(&View{Upstreams: map[string]uint64{}, Updated: time.Now()})
	props := actor.PropsFromProducer(func() actor.Actor { return newSupervisor(e, &cfg) },
		actor.WithSupervisor(newRestartStrategy(e, &cfg)),
		actor.WithGuardian(&supervisorGuardian{e: e, cfg: &cfg}))
	pid, err := system.Root.SpawnNamed(props, "follower")
	if err != nil {
		return nil, fmt.Errorf("start engine: %w", err)
	}
	e.supervisor = pid
	return e, nil
}

// View returns the current view of the tips and restart counts. thread-safe.
func (e *Engine) View() *View {
	v := *e.view.Load()
	v.Restarts = map[string]int{}
	for i, name := range actorNames {
		if n := e.restarts[i].Load(); n > 0 {
			v.Restarts[name] = int(n)
		}
	}
	return &v
}

var actorNames = [4]string{SupervisorName, FetcherName, ApplierName, ProofTrackerName}

// restarted counts a restart of the named actor. It is counted by the
// supervision strategies, not by a message, so a restart is never lost to
// the failure it follows.
func (e *Engine) restarted(name string, m *otel.Metrics) {
	for i, n := range actorNames {
		if n == name {
			e.restarts[i].Add(1)
		}
	}
	m.Restarted(name)
}

// UpstreamNotes returns what is held against each upstream now (problem,
// backoff, suspicion); upstreams in good standing are left out. thread-safe.
func (e *Engine) UpstreamNotes() map[string]UpstreamNote {
	m := e.notes.Load()
	if m == nil {
		return map[string]UpstreamNote{}
	}
	return notesAt(*m, time.Now())
}

// publishNotes replaces the snapshot UpstreamNotes reads.
func (e *Engine) publishNotes(m map[string]UpstreamNote) { e.notes.Store(&m) }

// TipSeen tells the engine that an upstream (by name) says it holds block
// tip (its latest header, as the health poller counted it): a caught-up
// Fetcher fetches up to it at once. thread-safe.
func (e *Engine) TipSeen(upstream string, tip uint64) {
	e.system.Root.Send(childPID(e.supervisor, FetcherName), &messages.TipHint{Upstream: upstream, Tip: tip})
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Fatal delivers the error the engine gave up with, if it does.
func (e *Engine) Fatal() <-chan error { return e.fatal }

func (e *Engine) fail(err error) {
	e.fatalOnce.Do(func() { e.fatal <- fmt.Errorf("%w: %w", ErrFatal, err) })
}

// Stop stops every actor (the Supervisor's children first) and waits.
func (e *Engine) Stop() error {
	if err := e.system.Root.PoisonFuture(e.supervisor).Wait(); err != nil {
		return fmt.Errorf("stop engine: %w", err)
	}
	return nil
}

func childPID(parent *actor.PID, name string) *actor.PID {
	return actor.NewPID(parent.Address, parent.Id+"/"+name)
}

// ed25519Key is the producer key the Fetcher checks signatures against.
func (c *Config) producer() ed25519.PublicKey { return c.Store.Genesis().Producer() }
