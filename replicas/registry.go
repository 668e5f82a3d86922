package replicas

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Config configures a Registry.
type Config struct {
	ID   string // this store's (LoadID)
	Addr string // where this store serves its read API, as told upstream
	// Tips returns this store's durable committed and proven tips (a
	// store's published tips are durable: it publishes after the commit).
	Tips  func() (committed, proven uint64)
	Trust Trust
	// TTL: a store not heard from for this long is dropped (default
	// DefaultTTL).
	TTL time.Duration
	Log *slog.Logger
}

// DefaultTTL is how long a store below is kept without word of it: several
// health intervals (1 s by default), so one late poll drops nothing.
const DefaultTTL = 10 * time.Second

// Copies are the k of the watermarks every store computes.
var Copies = []int{1, 2, 3}

// reportRefresh is how long a store reuses the summary it built while its
// tips stand still: the ages in it grow stale by at most this much.
const reportRefresh = 200 * time.Millisecond

// SummaryEvery is how often a connection carries the summary of the stores
// below; the other calls carry the reporter's own tips alone. A summary of
// MaxEntries costs its receiver a few hundred microseconds to decode, which
// on every block fetch of a catch-up (hundreds a second) would load the
// upstream for nothing: the stores below change tips no faster than they
// report, and the table need only be within a health interval (1 s).
const SummaryEvery = 250 * time.Millisecond

// Registry is the Table of one store with what connects it to gRPC: a
// server interceptor that takes the reports of the stores calling it, a
// client interceptor that sends this store's report on its calls upstream,
// and the view of both for /status and metrics. thread-safe.
type Registry struct {
	cfg Config

	mu       sync.Mutex
	addr     string
	table    *Table
	problems map[string]string // last problem logged per calling host
	rejected map[string]int64  // reports not taken, by reason
	sent     struct {
		at             time.Time
		c, p           uint64 // the tips in full
		full           string // with the summary
		short          string // the tips alone
		shortC, shortP uint64 // the tips in short
	}
}

// New returns the registry of the store cfg describes.
func New(cfg Config) *Registry {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Registry{cfg: cfg, addr: cfg.Addr, table: NewTable(cfg.ID, cfg.TTL), problems: map[string]string{},
		rejected: map[string]int64{"malformed": 0, "cycle": 0}}
}

// SetAddr sets the address told upstream, once the listener is bound (when
// Config.Addr was left empty).
func (g *Registry) SetAddr(addr string) {
	g.mu.Lock()
	g.addr, g.sent.full, g.sent.short = addr, "", ""
	g.mu.Unlock()
}

// ID is this store's id.
func (g *Registry) ID() string { return g.cfg.ID }

// UnaryServerInterceptor takes the report a call carries, if any, before
// the call is served (or refused: a refused read still says the caller is
// alive). A bad report is logged and dropped; the call goes on as if it had
// none, so no client is worse off for sending one.
func (g *Registry) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		g.receive(ctx, time.Now())
		return handler(ctx, req)
	}
}

func (g *Registry) receive(ctx context.Context, now time.Time) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return
	}
	vals := md.Get(MetadataKey)
	if len(vals) == 0 {
		return
	}
	host := "unknown"
	var subject string
	if p, ok := peer.FromContext(ctx); ok {
		if h, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			host = h
		}
		subject = certSubject(p)
	}
	r, err := Decode([]byte(vals[0]))
	if err != nil {
		g.problem(host, "malformed", err.Error())
		return
	}
	if subject == "" {
		subject = g.cfg.Trust.vouch(r)
	}
	g.mu.Lock()
	err = g.table.Observe(r, subject, now)
	g.mu.Unlock()
	if err != nil {
		g.problem(host, "cycle", err.Error())
	}
}

// certSubject is the subject of a verified client certificate, if the
// connection has one.
func certSubject(p *peer.Peer) string {
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return ""
	}
	return "cert " + info.State.VerifiedChains[0][0].Subject.String()
}

// problem counts a report not taken and logs it once per calling host and
// problem, so a client repeating a bad report does not flood the log.
func (g *Registry) problem(host, reason, what string) {
	g.mu.Lock()
	g.rejected[reason]++
	first := g.problems[host] != what
	if first {
		if len(g.problems) > MaxUnverified {
			clear(g.problems)
		}
		g.problems[host] = what
	}
	g.mu.Unlock()
	if first {
		g.cfg.Log.Warn("follower report not taken", "from", host, "problem", what)
	}
}

// UnaryClientInterceptor sends this store's report on every call through
// the connection it is installed on (one interceptor per connection): a
// follower's connections to its upstreams (not its peers, which do not
// count it as below them). Every call carries the tips; one every
// SummaryEvery carries the summary too.
func (g *Registry) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	var mu sync.Mutex
	var last time.Time // when this connection last carried the summary
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		now := time.Now()
		mu.Lock()
		full := now.Sub(last) >= SummaryEvery
		if full {
			last = now
		}
		mu.Unlock()
		ctx = metadata.AppendToOutgoingContext(ctx, MetadataKey, g.report(now, full))
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// report returns the encoded report, with the summary or the tips alone.
// The tips alone are encoded again when they move (at every block of a
// catch-up); the summary, which walks the table, only when a call is to
// carry it and the one built last is stale (the tips moved, or
// reportRefresh passed: the ages in it).
func (g *Registry) report(now time.Time, full bool) string {
	c, p := g.cfg.Tips()
	g.mu.Lock()
	defer g.mu.Unlock()
	self := Report{ID: g.cfg.ID, Addr: g.addr, Committed: c, Proven: p}
	if !full {
		if g.sent.short == "" || g.sent.shortC != c || g.sent.shortP != p {
			g.sent.short, g.sent.shortC, g.sent.shortP = string(Encode(self)), c, p
		}
		return g.sent.short
	}
	if g.sent.full == "" || g.sent.c != c || g.sent.p != p || now.Sub(g.sent.at) >= reportRefresh {
		g.sent.full = string(Encode(g.table.Summary(now, self)))
		g.sent.at, g.sent.c, g.sent.p = now, c, p
	}
	return g.sent.full
}

// Status is what /status shows of the stores below.
type Status struct {
	ID        string `json:"store_id,omitempty"`
	Followers []Row  `json:"followers,omitempty"`
	// Watermarks by k ("1", "2", "3"): the highest block durable on at
	// least k verified stores below; null with fewer than k of them.
	Watermarks map[string]*uint64 `json:"replicated_watermark,omitempty"`
	LeftOut    int                `json:"followers_left_out,omitempty"` // stores the reports left out (over their bounds)
}

// Status returns the table now.
func (g *Registry) Status() Status {
	now := time.Now()
	c, p := g.cfg.Tips()
	g.mu.Lock()
	rows := g.table.Rows(now, c, p)
	left := g.table.Overflow(now)
	g.mu.Unlock()
	s := Status{ID: g.cfg.ID, Followers: rows, Watermarks: map[string]*uint64{}, LeftOut: left}
	for _, k := range Copies {
		if wm, ok := Watermark(rows, k); ok {
			s.Watermarks[strconv.Itoa(k)] = &wm
		} else {
			s.Watermarks[strconv.Itoa(k)] = nil
		}
	}
	return s
}

// Watermark returns the watermark for k copies now.
func (g *Registry) Watermark(k int) (uint64, bool) {
	c, p := g.cfg.Tips()
	g.mu.Lock()
	rows := g.table.Rows(time.Now(), c, p)
	g.mu.Unlock()
	return Watermark(rows, k)
}

var (
	descWatermark = prometheus.NewDesc("storesync_replicated_watermark",
		"Highest block durable on at least `copies` verified stores below this one (absent with fewer).", []string{"copies"}, nil)
	descKnown = prometheus.NewDesc("storesync_followers_known",
		"Stores below this one heard from within the follower timeout, by whether they count toward the watermark.", []string{"verified"}, nil)
	descAge = prometheus.NewDesc("storesync_follower_report_age_seconds",
		"Age of the oldest word of a store below this one (absent when none is known).", nil, nil)
	descLeftOut = prometheus.NewDesc("storesync_followers_left_out",
		"Stores below this one that the reports left out, over their bounds.", nil, nil)
	descRejected = prometheus.NewDesc("storesync_follower_reports_rejected_total",
		"Reports not taken: malformed, or naming this store (a cycle).", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (g *Registry) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWatermark, descKnown, descAge, descLeftOut, descRejected} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (g *Registry) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	c, p := g.cfg.Tips()
	g.mu.Lock()
	rows := g.table.Rows(now, c, p)
	left := g.table.Overflow(now)
	rejected := map[string]int64{}
	for k, v := range g.rejected {
		rejected[k] = v
	}
	g.mu.Unlock()
	for _, k := range Copies {
		if wm, ok := Watermark(rows, k); ok {
			ch <- prometheus.MustNewConstMetric(descWatermark, prometheus.GaugeValue, float64(wm), strconv.Itoa(k))
		}
	}
	verified, oldest := 0, time.Duration(-1)
	for _, r := range rows {
		if r.Verified {
			verified++
		}
		oldest = max(oldest, now.Sub(r.Heard))
	}
	ch <- prometheus.MustNewConstMetric(descKnown, prometheus.GaugeValue, float64(verified), "true")
	ch <- prometheus.MustNewConstMetric(descKnown, prometheus.GaugeValue, float64(len(rows)-verified), "false")
	if oldest >= 0 {
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, oldest.Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descLeftOut, prometheus.GaugeValue, float64(left))
	for reason, n := range rejected {
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(n), reason)
	}
}
