package otel

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"storesync/state"
)

// Metrics are every series a node exports, on its own registry (so two nodes
// in one process, as in the devnet and the tests, do not collide). Every
// method is safe on a nil *Metrics: with metrics off, instrumented code
// pays one nil check.
type Metrics struct {
	reg *prometheus.Registry

	committed, proven *prometheus.GaugeVec // label: none ("")
	upstreamTip       *prometheus.GaugeVec // label: upstream
	lagBlocks         prometheus.Gauge
	lagSeconds        prometheus.Gauge
	windowBlocks      prometheus.Gauge
	windowBytes       prometheus.Gauge
	fetchLimit        prometheus.Gauge
	fetch             *prometheus.HistogramVec // label: outcome
	apply             *prometheus.HistogramVec // label: stage
	syncLatency       prometheus.Histogram
	groupBlocks       prometheus.Histogram
	bytes             *prometheus.CounterVec // label: kind (useful, redundant)
	rejected          *prometheus.CounterVec // label: reason
	restarts          *prometheus.CounterVec // label: actor
	reads             *prometheus.CounterVec // labels: method, code
	// Followers only: a primary has no readiness, so these stay absent
	// there (a vector without labels exports nothing until first set),
	// and a rule joining on them selects followers alone.
	ready        *prometheus.GaugeVec // label: none ("")
	maxLag       *prometheus.GaugeVec // label: none ("")
	storageFault *prometheus.GaugeVec // label: none ("")
}

// Actors are the sync engine's actors (actors.SupervisorName and the
// others; this package cannot import actors, which imports it): the label
// values of storesync_actor_restarts_total.
var Actors = []string{"supervisor", "fetcher", "applier", "prooftracker"}

// RejectReasons are the label values of storesync_rejected_blocks_total:
// every ApplyBlock check (state.Checks; the Fetcher's own cheap checks,
// "decode", "signature" and "number", are among them) and "proof", a proof
// that failed verification.
var RejectReasons = rejectReasons()

func rejectReasons() []string {
	r := make([]string, 0, len(state.Checks)+1)
	for _, c := range state.Checks {
		r = append(r, string(c))
	}
	return append(r, "proof")
}

// ByteKinds are the label values of storesync_fetched_bytes_total.
var ByteKinds = []string{"useful", "redundant"}

// latencyBuckets span a fast local apply (100 µs) to a slow remote fetch (30 s).
var latencyBuckets = prometheus.ExponentialBucketsRange(100e-6, 30, 16)

// NewMetrics creates and registers every series.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.committed = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "storesync_committed_tip", Help: "Highest block committed in this store."}, nil)
	m.proven = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "storesync_proven_tip", Help: "Highest block proven in this store."}, nil)
	m.upstreamTip = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "storesync_upstream_tip", Help: "Highest block each upstream has served."}, []string{"upstream"})
	m.lagBlocks = prometheus.NewGauge(prometheus.GaugeOpts{Name: "storesync_lag_blocks", Help: "Chain tip minus committed tip (-1 when unknown)."})
	m.lagSeconds = prometheus.NewGauge(prometheus.GaugeOpts{Name: "storesync_lag_seconds", Help: "Age of the committed tip's block when behind the chain tip, else 0 (-1 when unknown)."})
	m.windowBlocks = prometheus.NewGauge(prometheus.GaugeOpts{Name: "storesync_fetch_window_blocks", Help: "Blocks in flight or waiting to be applied."})
	m.windowBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "storesync_fetch_window_bytes", Help: "Bytes held or expected by the fetch window."})
	m.fetchLimit = prometheus.NewGauge(prometheus.GaugeOpts{Name: "storesync_fetch_limit", Help: "Calls the fetcher allows in flight: the window, or fewer on a link too slow for it."})
	m.fetch = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "storesync_fetch_duration_seconds", Help: "GetBlockByNumber calls made by the fetcher, by outcome.", Buckets: latencyBuckets}, []string{"outcome"})
	m.apply = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "storesync_apply_duration_seconds", Help: "ApplyBlock time, per stage (validate, trees, blockfile, sqlite, state) and in total.", Buckets: latencyBuckets}, []string{"stage"})
	m.groupBlocks = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "storesync_apply_group_blocks", Help: "Blocks committed together in one group (one block-file sync and one SQLite transaction); 1 when caught up.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	m.syncLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "storesync_sync_latency_seconds", Help: "From a block's timestamp to its commit in this store.", Buckets: latencyBuckets})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storesync_fetched_bytes_total", Help: "Bytes fetched from upstreams: useful (blocks and proofs needed) or redundant (blocks fetched again to ask for a proof)."}, []string{"kind"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storesync_rejected_blocks_total", Help: "Blocks that failed a check, by reason; reason \"proof\": a proof that failed verification (the block itself was fine)."}, []string{"reason"})
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storesync_actor_restarts_total", Help: "Actor restarts after a failure, by actor."}, []string{"actor"})
	m.reads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storesync_read_requests_total", Help: "Read API requests served, by method and status code."}, []string{"method", "code"})
	m.ready = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "storesync_ready", Help: "1 while this follower is ready to serve reads (what /readyz and gRPC health say), else 0."}, nil)
	m.maxLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "storesync_max_lag_blocks", Help: "The lag this follower may have and still be ready (--max-lag)."}, nil)
	m.storageFault = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "storesync_storage_fault", Help: "1 while this follower's store refuses writes (disk full, read-only, I/O error): applying is paused, else 0."}, nil)
	m.reg.MustRegister(m.committed, m.proven, m.upstreamTip, m.lagBlocks, m.lagSeconds, m.windowBlocks, m.windowBytes,
		m.fetchLimit, m.fetch, m.apply, m.syncLatency, m.groupBlocks, m.bytes, m.rejected, m.restarts, m.reads,
		m.ready, m.maxLag, m.storageFault,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.lagBlocks.Set(-1)
	m.lagSeconds.Set(-1)
	// Counters whose label values are known are exported at 0 from the
	// start: increase() over a series that appears at its first event sees
	// no increase, so an alert on it would miss that event.
	for _, a := range Actors {
		m.restarts.WithLabelValues(a)
	}
	for _, r := range RejectReasons {
		m.rejected.WithLabelValues(r)
	}
	for _, k := range ByteKinds {
		m.bytes.WithLabelValues(k)
	}
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Tips sets the committed and proven tips.
func (m *Metrics) Tips(committed, proven uint64) {
	if m == nil {
		return
	}
	m.committed.WithLabelValues().Set(float64(committed))
	m.proven.WithLabelValues().Set(float64(proven))
}

// UpstreamTip sets an upstream's tip.
func (m *Metrics) UpstreamTip(upstream string, tip uint64) {
	if m != nil {
		m.upstreamTip.WithLabelValues(upstream).Set(float64(tip))
	}
}

// Lag sets the lag; known false sets both gauges to -1.
func (m *Metrics) Lag(known bool, blocks uint64, age time.Duration) {
	if m == nil {
		return
	}
	if !known {
		m.lagBlocks.Set(-1)
		m.lagSeconds.Set(-1)
		return
	}
	m.lagBlocks.Set(float64(blocks))
	if blocks == 0 {
		age = 0
	}
	m.lagSeconds.Set(age.Seconds())
}

// Readiness sets a follower's readiness verdict, the lag it may have and
// still be ready (exported, so that an alert compares the lag with the
// follower's own bound rather than a number copied into the rule), and
// whether its store refuses writes.
func (m *Metrics) Readiness(ready bool, maxLag uint64, storageFault bool) {
	if m == nil {
		return
	}
	m.ready.WithLabelValues().Set(b2f(ready))
	m.maxLag.WithLabelValues().Set(float64(maxLag))
	m.storageFault.WithLabelValues().Set(b2f(storageFault))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Window sets the fetch window's occupancy.
func (m *Metrics) Window(blocks int, bytes int64) {
	if m != nil {
		m.windowBlocks.Set(float64(blocks))
		m.windowBytes.Set(float64(bytes))
	}
}

// FetchLimit sets how many calls the fetcher allows in flight.
func (m *Metrics) FetchLimit(calls int) {
	if m != nil {
		m.fetchLimit.Set(float64(calls))
	}
}

// Fetched records one fetch call.
func (m *Metrics) Fetched(outcome string, d time.Duration) {
	if m != nil {
		m.fetch.WithLabelValues(outcome).Observe(d.Seconds())
	}
}

// Applied records one ApplyBlock by stage, and the block's sync latency.
func (m *Metrics) Applied(validate, trees, blockfile, sqlite, state time.Duration, blockTime time.Time) {
	if m == nil {
		return
	}
	m.apply.WithLabelValues("validate").Observe(validate.Seconds())
	m.apply.WithLabelValues("trees").Observe(trees.Seconds())
	m.apply.WithLabelValues("blockfile").Observe(blockfile.Seconds())
	m.apply.WithLabelValues("sqlite").Observe(sqlite.Seconds())
	m.apply.WithLabelValues("state").Observe(state.Seconds())
	m.apply.WithLabelValues("total").Observe((validate + trees + blockfile + sqlite + state).Seconds())
	m.syncLatency.Observe(max(time.Since(blockTime), 0).Seconds())
}

// Group counts one committed group of blocks.
func (m *Metrics) Group(blocks int) {
	if m != nil && blocks > 0 {
		m.groupBlocks.Observe(float64(blocks))
	}
}

// Bytes counts fetched bytes of a kind: "useful" or "redundant".
func (m *Metrics) Bytes(kind string, n int) {
	if m != nil && n > 0 {
		m.bytes.WithLabelValues(kind).Add(float64(n))
	}
}

// Rejected counts a block that failed a check.
func (m *Metrics) Rejected(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// Restarted counts an actor restart.
func (m *Metrics) Restarted(actor string) {
	if m != nil {
		m.restarts.WithLabelValues(actor).Inc()
	}
}

// UnaryInterceptor counts the read requests a gRPC server serves.
func (m *Metrics) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if m != nil {
			m.reads.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
		}
		return resp, err
	}
}

// Register adds a collector of another part of the node (such as the table
// of followers) to the node's registry.
func (m *Metrics) Register(c prometheus.Collector) { m.reg.MustRegister(c) }
