package otel

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/stats"
)

// Wire counts the bytes a gRPC server sends on the wire, by method: with
// the calls served (storesync_read_requests_total) and the process's CPU
// (process_cpu_seconds_total) it is the store's own account of the work
// its readers cost it, which is how a primary shows that reads sent to its
// followers cost it nothing. A stats handler, not an interceptor: only the
// transport knows the wire length (compression and framing included).
// thread-safe.
type Wire struct {
	sent *prometheus.CounterVec
}

// NewWire makes the counter; register it with Metrics.Register and install
// it with grpc.StatsHandler.
func NewWire() *Wire {
	return &Wire{sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "storesync_grpc_sent_bytes_total",
		Help: "Bytes the public gRPC server sent on the wire (response messages), by method."}, []string{"method"})}
}

// Describe implements prometheus.Collector.
func (w *Wire) Describe(ch chan<- *prometheus.Desc) { w.sent.Describe(ch) }

// Collect implements prometheus.Collector.
func (w *Wire) Collect(ch chan<- prometheus.Metric) { w.sent.Collect(ch) }

type methodKey struct{}

// TagRPC keeps the method name for the payload events of the call.
func (w *Wire) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

// HandleRPC counts each message sent.
func (w *Wire) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if out, ok := s.(*stats.OutPayload); ok {
		m, _ := ctx.Value(methodKey{}).(string)
		w.sent.WithLabelValues(m).Add(float64(out.WireLength))
	}
}

// TagConn implements stats.Handler.
func (w *Wire) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn implements stats.Handler.
func (w *Wire) HandleConn(context.Context, stats.ConnStats) {}
