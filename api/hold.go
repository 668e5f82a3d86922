package api

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"storesync/api/storev1"
	"storesync/store"
)

// A client may ask, in the metadata of a GetBlockByNumber request, that the
// call be held until what it wants exists, instead of an empty answer now:
//
//	storesync-hold: block       the block is past the tip: answer when it commits
//	storesync-hold: proof       the block is committed, not proven: answer when its proof is
//	storesync-hold-wait: 5000   at most this many milliseconds (capped by the server's maximum)
//	storesync-hold-grace: 20    with "block" and include_proof: once the block commits, wait up
//	                            to this many milliseconds more for its proof (within the wait)
//
// The answer is then exactly what the call would return at that moment (an
// empty MaybeBlock if the wait ended first). Every answer to GetBlockByNumber
// carries the response header storesync-hold-max: the server's maximum
// wait in milliseconds, so a client learns from its first answer that this
// server holds calls (a server that does not, or a proxy that strips the
// metadata, sends no such header, and the client polls as before). A client
// that does not ask sees no change at all. An answer to a call that was
// held (that waited in the pool) also carries storesync-released-at: when
// the hold ended, so that the client can tell the time the block took to
// exist from the time the answer took to come.
const (
	HoldKey     = "storesync-hold"
	HoldWaitKey = "storesync-hold-wait"
	HoldMaxKey  = "storesync-hold-max"
	// HoldGraceKey: a store that proves its blocks within moments of
	// committing them would answer a held "block" call at the commit,
	// without the proof, and the client would fetch the block's bytes
	// again for the proof a few milliseconds later; with a grace it gets
	// both in one answer, for at most the grace's delay.
	HoldGraceKey = "storesync-hold-grace"
	// ProvenKey, in the header of every GetBlockByNumber answer, is the
	// server's proven tip when it answered: the proofs up to it exist, so a
	// client behind on proofs can ask for them all at once.
	ProvenKey = "storesync-proven-tip"
	// ReleasedAtKey, in the header of an answer to a call that was held,
	// is when the server released it (what it waited for came, the wait
	// ended, or shutdown), in unix microseconds on the server's clock. A
	// call answered at once has none: it was released when it arrived.
	ReleasedAtKey = "storesync-released-at"
	HoldBlock     = "block"
	HoldProof     = "proof"
)

// HoldConfig bounds the held calls of one server.
type HoldConfig struct {
	MaxWait    time.Duration // the longest a call is held, whatever it asks
	MaxHeld    int           // calls held at once, over all connections
	MaxPerConn int           // ... and on one connection
}

// DefaultHoldConfig: a wait far above any block interval, and room for
// every follower and client a store serves, each with a few held calls.
var DefaultHoldConfig = HoldConfig{MaxWait: 30 * time.Second, MaxHeld: 1024, MaxPerConn: 16}

// Holds holds GetBlockByNumber calls that ask for it until the store has
// what they want. It runs as an interceptor before the read limiter, so a
// held call takes no read slot while it waits; it has a pool of its own,
// fair per connection: beyond either bound a call is answered at once, as
// if it had not asked. thread-safe.
type Holds struct {
	st  *store.Store
	cfg HoldConfig
	max string // cfg.MaxWait in ms, for the response header

	mu      sync.Mutex
	held    int
	perConn map[string]int
	closed  chan struct{} // closed by Release
	once    sync.Once

	outcomes *prometheus.CounterVec
	gauge    prometheus.GaugeFunc
}

// Outcomes of a call that asked to be held.
var HoldOutcomes = []string{"answered", "expired", "cancelled", "refused", "shutdown", "not_needed"}

// NewHolds returns the holds of a server over st; zero fields of cfg take
// DefaultHoldConfig's.
func NewHolds(st *store.Store, cfg HoldConfig) *Holds {
	d := DefaultHoldConfig
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = d.MaxWait
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = d.MaxHeld
	}
	if cfg.MaxPerConn <= 0 {
		cfg.MaxPerConn = d.MaxPerConn
	}
	h := &Holds{st: st, cfg: cfg, max: strconv.FormatInt(cfg.MaxWait.Milliseconds(), 10), perConn: map[string]int{}, closed: make(chan struct{})}
	h.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storesync_held_calls_total",
		Help: "GetBlockByNumber calls that asked to be held, by outcome: answered (what they waited for came), expired (the wait ended first), cancelled (by the client), refused (the pool was full: answered at once), shutdown, not_needed (it was there already)."}, []string{"outcome"})
	for _, o := range HoldOutcomes {
		h.outcomes.WithLabelValues(o)
	}
	h.gauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "storesync_held_calls", Help: "GetBlockByNumber calls held now."},
		func() float64 { return float64(h.Held()) })
	return h
}

// Collectors are the holds' metrics, for the node's registry.
func (h *Holds) Collectors() []prometheus.Collector {
	return []prometheus.Collector{h.outcomes, h.gauge}
}

// Held is how many calls are held now.
func (h *Holds) Held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

// Release answers every held call now and holds no more: at shutdown,
// after the health service says NOT_SERVING, so clients see empty answers
// promptly rather than calls cut by the server's stop.
func (h *Holds) Release() { h.once.Do(func() { close(h.closed) }) }

var getBlockMethod = "/" + storev1.Store_ServiceDesc.ServiceName + "/GetBlockByNumber"

// UnaryServerInterceptor holds GetBlockByNumber calls that ask for it.
func (h *Holds) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod != getBlockMethod {
			return handler(ctx, req)
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs(HoldMaxKey, h.max))
		r, ok := req.(*storev1.BlockByNumberRequest)
		if !ok {
			return handler(ctx, req)
		}
		ask, err := holdAsked(ctx)
		if err != nil {
			return nil, err
		}
		if ask.kind != "" {
			ask.wait = min(ask.wait, h.cfg.MaxWait)
			if h.hold(ctx, ask, r) {
				_ = grpc.SetHeader(ctx, metadata.Pairs(ReleasedAtKey, strconv.FormatInt(time.Now().UnixMicro(), 10)))
			}
		}
		// Read before the answer is built from a newer snapshot: a lower
		// bound of what the answer could say, never more.
		proven := h.st.Snapshot().Proven
		_ = grpc.SetHeader(ctx, metadata.Pairs(ProvenKey, strconv.FormatUint(proven, 10)))
		return handler(ctx, req)
	}
}

// holdAsk is what a call asks to be held for.
type holdAsk struct {
	kind        string // "": no hold
	wait, grace time.Duration
}

// holdAsked reads the hold a call asks for.
func holdAsked(ctx context.Context) (holdAsk, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	kinds := md.Get(HoldKey)
	if len(kinds) == 0 {
		return holdAsk{}, nil
	}
	a := holdAsk{kind: kinds[0]}
	if a.kind != HoldBlock && a.kind != HoldProof {
		return holdAsk{}, status.Errorf(codes.InvalidArgument, "%s: want %q or %q, got %q", HoldKey, HoldBlock, HoldProof, a.kind)
	}
	waits := md.Get(HoldWaitKey)
	if len(waits) == 0 {
		return holdAsk{}, status.Errorf(codes.InvalidArgument, "%s %s without %s (milliseconds)", HoldKey, a.kind, HoldWaitKey)
	}
	var err error
	if a.wait, err = millis(HoldWaitKey, waits[0]); err != nil {
		return holdAsk{}, err
	}
	if graces := md.Get(HoldGraceKey); len(graces) > 0 {
		if a.kind != HoldBlock {
			return holdAsk{}, status.Errorf(codes.InvalidArgument, "%s is for %s %q, not %q", HoldGraceKey, HoldKey, HoldBlock, a.kind)
		}
		if a.grace, err = millis(HoldGraceKey, graces[0]); err != nil {
			return holdAsk{}, err
		}
	}
	return a, nil
}

// millis parses a positive number of milliseconds (at most an hour).
func millis(key, v string) (time.Duration, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0, status.Errorf(codes.InvalidArgument, "%s: want a positive number of milliseconds, got %q", key, v)
	}
	return time.Duration(min(ms, int64(time.Hour/time.Millisecond))) * time.Millisecond, nil
}

// wanted reports whether the call's answer now would lack what it waits
// for: the block, or (asked for the proof, or in a grace) its proof.
func (h *Holds) wanted(kind string, r *storev1.BlockByNumberRequest) bool {
	sn := h.st.Snapshot()
	n := r.GetBlockNum()
	if kind == HoldBlock {
		return n > sn.Committed()
	}
	return r.GetIncludeProof() && n >= 1 && n <= sn.Committed() && n > sn.Proven
}

// hold waits until the store has what the call waits for, the wait ends,
// the client cancels, or Release. It takes a place in the pool only if it
// has to wait, and reports whether it did. A grace, once the block has
// come, waits for its proof as a hold for the proof would, up to the grace
// (within the wait).
func (h *Holds) hold(ctx context.Context, a holdAsk, r *storev1.BlockByNumberRequest) (waited bool) {
	// The channel first, then the check: a commit between the two closes
	// the channel already taken, so none is missed.
	changed := h.st.Changed()
	kind := a.kind
	if !h.wanted(kind, r) {
		h.outcomes.WithLabelValues("not_needed").Inc()
		return false
	}
	conn := ConnKey(ctx)
	if !h.acquire(conn) {
		h.outcomes.WithLabelValues("refused").Inc()
		return false
	}
	defer h.release(conn)
	t := time.NewTimer(a.wait)
	defer t.Stop()
	var grace <-chan time.Time // running once the block came, in a grace
	for {
		select {
		case <-changed:
		case <-grace:
			h.outcomes.WithLabelValues("answered").Inc()
			return true
		case <-t.C:
			h.outcomes.WithLabelValues("expired").Inc()
			return true
		case <-ctx.Done():
			h.outcomes.WithLabelValues("cancelled").Inc()
			return true
		case <-h.closed:
			h.outcomes.WithLabelValues("shutdown").Inc()
			return true
		}
		changed = h.st.Changed()
		if h.wanted(kind, r) {
			continue
		}
		if kind == HoldBlock && a.grace > 0 && h.wanted(HoldProof, r) {
			kind = HoldProof
			g := time.NewTimer(a.grace)
			defer g.Stop()
			grace = g.C
			continue
		}
		h.outcomes.WithLabelValues("answered").Inc()
		return true
	}
}

func (h *Holds) acquire(conn string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.closed:
		return false
	default:
	}
	if h.held >= h.cfg.MaxHeld || h.perConn[conn] >= h.cfg.MaxPerConn {
		return false
	}
	h.held++
	h.perConn[conn]++
	return true
}

func (h *Holds) release(conn string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held--
	if h.perConn[conn]--; h.perConn[conn] == 0 {
		delete(h.perConn, conn)
	}
}

// ConnKey names the client connection a call came on (its remote address
// and port), for the bounds kept per connection: the read limiter's and the
// hold pool's.
func ConnKey(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "?"
}
