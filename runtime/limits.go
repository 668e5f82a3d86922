package runtime

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"storesync/api"
)

// Limits protect a follower from its own clients: what one connection, and
// all of them together, may hold of its memory and cores. The sync engine
// does not pass through any of them (its calls go out, not in), so what
// they shield is its share of the machine. Zero fields take the defaults.
type Limits struct {
	// MaxRequestBytes bounds one request message.
	MaxRequestBytes int
	// StreamsPerConn bounds the calls one connection has open at once
	// (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, enforced by the server: a
	// client that opens more has them refused). This is the per-connection
	// limit; a client waits for its own streams, never for others'.
	StreamsPerConn uint32
	// ConcurrentReads bounds the read calls running at once over all
	// connections; the rest wait in arrival order, at most QueuedReads of
	// them, and beyond that are refused with ResourceExhausted, except a
	// connection's only call, so one busy client cannot lock out the others.
	ConcurrentReads int
	QueuedReads     int
	// KeepaliveMinTime is the shortest interval between a client's pings:
	// a client pinging faster is sent GOAWAY.
	KeepaliveMinTime time.Duration
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it; a client that does not answer within keepaliveTimeout
	// is dropped, with its streams.
	KeepaliveTime time.Duration
	// IdleTimeout closes a connection without calls for this long.
	IdleTimeout time.Duration
}

// DefaultLimits: two cores' worth of reads running with room for I/O
// waits, a queue long enough for a burst of every connection's first call,
// and gRPC's own defaults tightened where they allow unbounded use
// (streams per connection are unlimited in gRPC, pings once per 5 minutes
// would refuse the 10 s keepalive of a follower chained behind this one).
var DefaultLimits = Limits{
	MaxRequestBytes:  api.MaxRequestBytes,
	StreamsPerConn:   64,
	ConcurrentReads:  16,
	QueuedReads:      256,
	KeepaliveMinTime: 5 * time.Second,
	KeepaliveTime:    time.Minute,
	IdleTimeout:      5 * time.Minute,
}

const (
	// keepaliveTimeout: an unanswered ping means the client is gone.
	keepaliveTimeout = 20 * time.Second
	// handshakeTimeout bounds a connection that never finishes its TLS
	// handshake or HTTP/2 preface (gRPC waits two minutes).
	handshakeTimeout = 10 * time.Second
	// maxHeaderBytes bounds the metadata of one call (gRPC allows 16 MiB per
	// stream); a trace context and an auth token need a few hundred bytes.
	maxHeaderBytes = 64 << 10
)

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = d.MaxRequestBytes
	}
	if l.StreamsPerConn == 0 {
		l.StreamsPerConn = d.StreamsPerConn
	}
	if l.ConcurrentReads <= 0 {
		l.ConcurrentReads = d.ConcurrentReads
	}
	if l.QueuedReads <= 0 {
		l.QueuedReads = d.QueuedReads
	}
	if l.KeepaliveMinTime <= 0 {
		l.KeepaliveMinTime = d.KeepaliveMinTime
	}
	if l.KeepaliveTime <= 0 {
		l.KeepaliveTime = d.KeepaliveTime
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	return l
}

// serverOptions are the read API server's limits; the read limiter is
// installed apart, as an interceptor.
func (l Limits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRequestBytes),
		grpc.MaxSendMsgSize(api.MaxResponseBytes),
		grpc.MaxConcurrentStreams(l.StreamsPerConn),
		grpc.MaxHeaderListSize(maxHeaderBytes),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.IdleTimeout, Time: l.KeepaliveTime, Timeout: keepaliveTimeout}),
	}
}

// readLimiter admits read calls: at most cap running, the rest waiting in
// arrival order (a buffered channel hands freed slots to blocked senders
// first in, first out). thread-safe.
type readLimiter struct {
	slots     chan struct{}
	maxQueued int

	mu      sync.Mutex
	waiting int
	perConn map[string]int // calls running or waiting, by connection
}

func newReadLimiter(l Limits) *readLimiter {
	return &readLimiter{slots: make(chan struct{}, l.ConcurrentReads), maxQueued: l.QueuedReads, perConn: map[string]int{}}
}

// exempt: health checks must answer while reads are saturated, or a
// balancer would take a busy follower for a dead one; reflection is rare
// and cheap.
func exempt(method string) bool {
	return strings.HasPrefix(method, "/"+healthpb.Health_ServiceDesc.ServiceName+"/") ||
		strings.HasPrefix(method, "/grpc.reflection.")
}

// unary is the interceptor.
func (r *readLimiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if exempt(info.FullMethod) {
		return handler(ctx, req)
	}
	conn := api.ConnKey(ctx)
	if err := r.acquire(ctx, conn); err != nil {
		return nil, err
	}
	defer r.release(conn)
	return handler(ctx, req)
}

func (r *readLimiter) acquire(ctx context.Context, conn string) error {
	r.mu.Lock()
	select {
	case r.slots <- struct{}{}:
		r.perConn[conn]++
		r.mu.Unlock()
		return nil
	default:
	}
	if mine := r.perConn[conn]; r.waiting >= r.maxQueued && mine > 0 {
		r.mu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "read limit: %d calls running and %d waiting; this connection has %d", cap(r.slots), r.maxQueued, mine)
	}
	r.waiting++
	r.perConn[conn]++
	r.mu.Unlock()
	select {
	case r.slots <- struct{}{}:
		r.mu.Lock()
		r.waiting--
		r.mu.Unlock()
		return nil
	case <-ctx.Done():
		r.mu.Lock()
		r.waiting--
		r.done(conn)
		r.mu.Unlock()
		return status.FromContextError(fmt.Errorf("waiting for a read slot: %w", ctx.Err())).Err()
	}
}

func (r *readLimiter) release(conn string) {
	<-r.slots
	r.mu.Lock()
	r.done(conn)
	r.mu.Unlock()
}

// CONTRACT: r.mu must be locked.
func (r *readLimiter) done(conn string) {
	if r.perConn[conn]--; r.perConn[conn] <= 0 {
		delete(r.perConn, conn)
	}
}
