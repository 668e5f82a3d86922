package health

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/sourcegraph/conc"

	"storesync/api/storev1"
	"storesync/block"
)

// Source is a store whose tip counts toward the chain tip.
type Source struct {
	Name   string
	Client storev1.StoreClient
}

// Poller asks every source for its latest header once per interval, keeps
// the tips that verify, and evaluates the Tracker. thread-safe.
type Poller struct {
	// immutable after construction
	sources   []Source
	producer  ed25519.PublicKey
	local     func() uint64
	interval  time.Duration
	cfg       Config
	log       *slog.Logger
	onVerdict func(v Verdict, flipped bool) // after every evaluation; flipped when readiness changed

	// OnTip, when set, is told every tip the poller counts, by source
	// name, right after the Tracker observes it, outside the poller's lock.
	// It is called from the polls' goroutines, several at once: it must be
	// thread-safe and quick. Set it before Run or Step.
	OnTip func(name string, tip uint64)

	mu       sync.Mutex
	tracker  *Tracker
	verdict  Verdict
	verified map[string]verifiedTip // per source: the last claim proved by a signed block
	problems map[string]string      // last problem logged per source
}

type verifiedTip struct {
	header block.Header
}

// NewPoller polls sources; local returns the follower's committed tip.
func NewPoller(sources []Source, producer ed25519.PublicKey, local func() uint64, interval time.Duration, cfg Config, log *slog.Logger, onVerdict func(Verdict, bool)) *Poller {
	p := &Poller{sources: sources, producer: producer, local: local, interval: interval, cfg: cfg, log: log, onVerdict: onVerdict,
		tracker: NewTracker(cfg), verified: map[string]verifiedTip{}, problems: map[string]string{}}
	p.verdict = Verdict{Reason: "starting: no store heard from yet", Evaluated: time.Now()}
	return p
}

// Verdict returns the latest evaluation.
func (p *Poller) Verdict() Verdict {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verdict
}

// Problems returns the current problem of each source that has one (the
// last poll of it failed or did not count), for /status.
func (p *Poller) Problems() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.problems)
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.Step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step polls every source once, concurrently, then evaluates.
func (p *Poller) Step(ctx context.Context) Verdict {
	var wg conc.WaitGroup
	for _, s := range p.sources {
		wg.Go(func() { p.poll(ctx, s) })
	}
	wg.Wait()
	p.mu.Lock()
	before := p.verdict.Ready
	v := p.tracker.Evaluate(time.Now(), p.local())
	p.verdict = v
	p.mu.Unlock()
	if v.Ready != before {
		p.log.Info("readiness changed", "ready", v.Ready, "reason", v.Reason)
	}
	if p.onVerdict != nil {
		p.onVerdict(v, v.Ready != before)
	}
	return v
}

func (p *Poller) poll(ctx context.Context, s Source) {
	// A poll may take longer than the interval (the verification fetches a
	// block), but a silent source must not hold up the evaluation for long.
	cctx, cancel := context.WithTimeout(ctx, max(p.interval, time.Second))
	defer cancel()
	resp, err := s.Client.GetBlockHeaderByNumber(cctx, &storev1.BlockHeaderByNumberRequest{})
	if err != nil {
		p.problem(s.Name, fmt.Sprintf("unreachable: %v", err))
		return
	}
	h, err := block.DecodeHeader(resp.Header)
	if err != nil {
		p.problem(s.Name, fmt.Sprintf("bad header: %v", err))
		return
	}
	if err := p.check(cctx, s, h); err != nil {
		p.problem(s.Name, fmt.Sprintf("tip %d not counted: %v", h.Number, err))
		return
	}
	p.mu.Lock()
	delete(p.problems, s.Name)
	p.tracker.Observe(s.Name, h.Number, time.Now())
	p.mu.Unlock()
	if p.OnTip != nil {
		p.OnTip(s.Name, h.Number)
	}
}

// check decides whether a claimed tip may count. A claim that cannot make
// this follower unready (within MaxLag of its own tip) counts as it is; a
// higher one counts only once the block behind it has been fetched from the
// same source and its header, signed by the producer, matches the claim.
func (p *Poller) check(ctx context.Context, s Source, h block.Header) error {
	if string(h.ProducerKey[:]) != string(p.producer) {
		return fmt.Errorf("header names another producer")
	}
	if h.Number <= p.local()+p.cfg.MaxLag {
		return nil
	}
	p.mu.Lock()
	v, ok := p.verified[s.Name]
	p.mu.Unlock()
	if ok && v.header == h {
		return nil
	}
	mb, err := s.Client.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: h.Number})
	if err != nil {
		return fmt.Errorf("fetch block to verify: %w", err)
	}
	if mb.Block == nil {
		return fmt.Errorf("claims a tip it does not serve")
	}
	b, err := block.Decode(mb.Block)
	if err != nil {
		return err
	}
	if b.Header != h {
		return fmt.Errorf("the block served does not match the header claimed")
	}
	if err := b.VerifySignature(p.producer); err != nil {
		return err
	}
	p.mu.Lock()
	p.verified[s.Name] = verifiedTip{header: h}
	p.mu.Unlock()
	return nil
}

// problem logs one line per distinct problem of a source.
func (p *Poller) problem(name, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.problems[name] != what {
		p.problems[name] = what
		p.log.Warn("health source problem", "source", name, "problem", what)
	}
}
