// Package runtime wires a follower together: its configuration, its store,
// the clients of its upstreams, the actor system running the sync engine,
// the read API served from its own store (read only: it has no write path at
// all), and an orderly shutdown.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"storesync/actors"
	"storesync/api"
	"storesync/genesis"
	"storesync/health"
	"storesync/otel"
	"storesync/replicas"
	"storesync/statuspage"
	"storesync/store"
)

// Config is a follower's configuration; cmd/follower fills it from flags.
type Config struct {
	DataDir       string
	Genesis       string // path of the genesis file (the trust anchor)
	Upstreams     []string
	Listen        string        // the read API
	HTTPListen    string        // /livez, /readyz, /status; empty: none
	Peers         []string      // other stores whose tips count toward the chain tip
	Health        health.Config // readiness rules
	HealthEvery   time.Duration // how often sources are polled
	ShutdownGrace time.Duration
	// TLS is the certificates of the listeners and of the connections to
	// upstreams and peers; zero: plain text everywhere.
	TLS TLS
	// Limits bound what clients of the read API may use; zero fields take
	// DefaultLimits.
	Limits Limits
	// Store sets the store's cache sizes; zero fields take
	// store.DefaultOptions.
	Store store.Options
	// Engine configures the sync engine. New sets its Store and appends an
	// upstream per address in Upstreams to any it already has.
	Engine actors.Config
	// Holds bounds the GetBlockByNumber calls the read API holds for the
	// clients that ask (zero fields: api.DefaultHoldConfig).
	Holds api.HoldConfig
	// Reports configures what the follower tells its upstreams and what it
	// takes from the stores below it.
	Reports Reports
	// Tracing exports the journey of every block; nil: off.
	Tracing trace.TracerProvider
	Log     *slog.Logger
}

// Reports configures the follower reports (package replicas).
type Reports struct {
	// Followers lists the reporters that count toward the watermark
	// without a client certificate: store ids, addresses, or "any".
	Followers []string
	// Timeout drops a store below not heard from for this long (0:
	// replicas.DefaultTTL).
	Timeout time.Duration
	// Advertise is the read API address told upstream (empty: the bound
	// listen address).
	Advertise string
}

// Follower is a follower store with its engine and read API.
type Follower struct {
	stopOnce sync.Once // Stop's work, done once; stopErr its result
	stopErr  error
	cfg      Config
	st       *store.Store
	ups      []*grpcUpstream
	system   *actor.ActorSystem
	engine   *actors.Engine
	server   *grpc.Server
	lis      net.Listener
	http     *http.Server
	hlis     net.Listener
	peers    []*grpcUpstream
	health   *grpchealth.Server
	metrics  *otel.Metrics
	progress progress
	serving  bool // what the gRPC health server says; owned by onVerdict
	poller   *health.Poller
	replicas *replicas.Registry
	holds    *api.Holds
	page     *statuspage.Page // the status page at /; nil without an HTTP listener
	// isUpstream holds the names of the upstreams (not the peers), whose
	// tips the poller passes on to the engine. immutable after New.
	isUpstream map[string]bool
	stop       context.CancelFunc
	bg         sync.WaitGroup
}

// New opens the store, dials the upstreams and binds the listener. Run
// starts the engine and the server.
func New(cfg Config) (*Follower, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("at least one --upstream is needed")
	}
	g, err := genesis.Load(cfg.Genesis)
	if err != nil {
		return nil, err
	}
	// Certificates first: a bad file stops the follower before it touches
	// its store.
	serverTLS, err := cfg.TLS.serverConfig(time.Now(), cfg.Log)
	if err != nil {
		return nil, err
	}
	upCreds, err := cfg.TLS.upstreamCredentials(time.Now())
	if err != nil {
		return nil, err
	}
	trust, err := replicas.ParseTrust(cfg.Reports.Followers)
	if err != nil {
		return nil, err
	}
	cfg.Limits = cfg.Limits.withDefaults()
	f := &Follower{cfg: cfg, metrics: otel.NewMetrics()}
	if f.st, err = store.OpenWith(filepath.Join(cfg.DataDir, "store"), g, cfg.Store); err != nil {
		return nil, err
	}
	id, err := replicas.LoadID(cfg.DataDir)
	if err != nil {
		f.closeAll()
		return nil, err
	}
	f.replicas = replicas.New(replicas.Config{ID: id, Addr: cfg.Reports.Advertise, Tips: f.st.Tips, Trust: trust,
		TTL: cfg.Reports.Timeout, Log: cfg.Log})
	f.metrics.Register(f.replicas)
	for _, addr := range cfg.Upstreams {
		// Upstreams hear this follower's report on every call; peers do
		// not (they do not count it as below them).
		u, err := dialUpstream(addr, upCreds, cfg.Tracing, f.replicas.UnaryClientInterceptor())
		if err != nil {
			f.closeAll()
			return nil, err
		}
		f.ups = append(f.ups, u)
	}
	for _, addr := range cfg.Peers {
		u, err := dialUpstream(addr, upCreds, nil, nil)
		if err != nil {
			f.closeAll()
			return nil, err
		}
		f.peers = append(f.peers, u)
	}
	if cfg.Health == (health.Config{}) {
		cfg.Health = health.DefaultConfig
	}
	if cfg.HealthEvery <= 0 {
		cfg.HealthEvery = time.Second
	}
	f.cfg = cfg
	if f.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		f.closeAll()
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.Reports.Advertise == "" {
		f.replicas.SetAddr(f.lis.Addr().String())
	}
	if cfg.HTTPListen != "" {
		if f.hlis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			f.lis.Close()
			f.lis = nil
			f.closeAll()
			return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPListen, err)
		}
		f.page = statuspage.New(f, statuspage.Config{})
		// Its error log is a line per failed TLS handshake or broken
		// client: a scanner's noise, kept to debug.
		f.http = &http.Server{Handler: f.handler(), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: maxHeaderBytes,
			ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)}
		if cfg.TLS.HTTP {
			f.http.TLSConfig = serverTLS.Clone()
		}
	}
	// The metrics interceptor outside the limiter, so refused reads count.
	// The report interceptor before the limiter too: a refused call still
	// says its caller is alive. Held calls wait before the limiter, in a
	// pool of their own, so that they take no read slot while they wait.
	f.holds = api.NewHolds(f.st, cfg.Holds)
	for _, c := range f.holds.Collectors() {
		f.metrics.Register(c)
	}
	wire := otel.NewWire()
	f.metrics.Register(wire)
	sopts := append(cfg.Limits.serverOptions(), grpc.StatsHandler(wire), grpc.ChainUnaryInterceptor(f.metrics.UnaryInterceptor(),
		f.replicas.UnaryServerInterceptor(), f.holds.UnaryServerInterceptor(), newReadLimiter(cfg.Limits).unary))
	if serverTLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(serverTLS)))
	}
	if cfg.Tracing != nil {
		sopts = append(sopts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(cfg.Tracing))))
	}
	f.server = grpc.NewServer(sopts...)
	api.RegisterPublic(f.server, f.st)
	// Standard gRPC health: NOT_SERVING until the follower proves it is
	// within MaxLag of the chain tip, for the empty name and the API's.
	f.health = grpchealth.NewServer()
	healthpb.RegisterHealthServer(f.server, f.health)
	f.setServing(false)
	var sources []health.Source
	seen := map[string]bool{}
	f.isUpstream = map[string]bool{}
	for _, u := range f.ups {
		f.isUpstream[u.Name()] = true
	}
	for _, u := range append(append([]*grpcUpstream{}, f.ups...), f.peers...) {
		if !seen[u.addr] {
			seen[u.addr] = true
			sources = append(sources, health.Source{Name: u.addr, Client: u.client})
		}
	}
	f.poller = health.NewPoller(sources, g.Producer(), func() uint64 { c, _ := f.st.Tips(); return c },
		cfg.HealthEvery, cfg.Health, cfg.Log, f.onVerdict)
	f.poller.OnTip = f.tipSeen
	return f, nil
}

// tipSeen passes a tip the health poller counted on to the engine when it
// is one of the follower's upstreams (a peer's tip counts toward the chain
// tip, but the engine does not fetch from it): a caught-up Fetcher fetches
// up to it at once instead of at its next probe. A source's name is its
// address, as is the upstream's actors.Upstream.Name. thread-safe.
func (f *Follower) tipSeen(name string, tip uint64) {
	if !f.isUpstream[name] {
		return
	}
	// The engine starts after the poller is made; Start sets it before
	// the poller runs.
	if e := f.engine; e != nil {
		e.TipSeen(name, tip)
	}
}

// ServiceName is the gRPC health service name besides "" that the
// follower reports.
const ServiceName = "storesync.v1.Store"

func (f *Follower) setServing(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	f.health.SetServingStatus("", st)
	f.health.SetServingStatus(ServiceName, st)
}

// Health returns the latest readiness verdict, with the engine's storage
// fault over it. thread-safe.
func (f *Follower) Health() health.Verdict { return f.withStorage(f.poller.Verdict()) }

// withStorage turns v not ready while the store refuses writes: such a
// follower serves reads that only fall further behind, and nothing in its lag
// says that it cannot catch up by itself.
func (f *Follower) withStorage(v health.Verdict) health.Verdict {
	if f.engine == nil {
		return v
	}
	if r := f.engine.StorageFault(); r != "" {
		v.Ready, v.Passing = false, false
		v.Reason = "storage: " + r + "; " + v.Reason
	}
	return v
}

// HTTPAddr is the bound address of the HTTP listener ("" if none).
func (f *Follower) HTTPAddr() string {
	if f.hlis == nil {
		return ""
	}
	return f.hlis.Addr().String()
}

// Addr is the bound address of the read API.
func (f *Follower) Addr() string { return f.lis.Addr().String() }

// Store is the follower's store.
func (f *Follower) Store() *store.Store { return f.st }

// Replicas is the follower's table of the stores below it.
func (f *Follower) Replicas() *replicas.Registry { return f.replicas }

// Engine is the running engine (nil before Run).
func (f *Follower) Engine() *actors.Engine { return f.engine }

// Start starts the engine and the server without blocking; Run does both
// and waits.
func (f *Follower) Start() error {
	cfg := f.cfg.Engine
	cfg.Store = f.st
	cfg.Log = f.cfg.Log
	cfg.Metrics = f.metrics
	cfg.Tracing = f.cfg.Tracing
	f.metrics.Tips(f.st.Tips())
	for _, u := range f.ups {
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
	f.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		// protoactor logs every lifecycle event at info; only its warnings
		// and errors are ours to see.
		return slog.New(levelHandler{slog.LevelWarn, f.cfg.Log.Handler()})
	}))
	var err error
	if f.engine, err = actors.Start(f.system, cfg); err != nil {
		return err
	}
	var ctx context.Context
	ctx, f.stop = context.WithCancel(context.Background())
	f.bg.Add(1)
	go func() { defer f.bg.Done(); f.poller.Run(ctx) }()
	if f.page != nil {
		f.bg.Add(1)
		go func() { defer f.bg.Done(); f.page.Run(ctx) }()
	}
	go func() { _ = f.server.Serve(f.lis) }()
	if f.http != nil {
		go func() {
			if f.http.TLSConfig != nil {
				_ = f.http.ServeTLS(f.hlis, "", "") // the certificate is in TLSConfig
				return
			}
			_ = f.http.Serve(f.hlis)
		}()
	}
	c, p := f.st.Tips()
	f.cfg.Log.Info("follower started", "chain", f.st.Genesis().ChainID, "committed", c, "proven", p,
		"listen", f.Addr(), "tls", f.cfg.TLS.CertFile != "", "upstreams", f.cfg.Upstreams, "store_id", f.replicas.ID())
	return nil
}

// Run serves and syncs until ctx ends or the engine gives up, then shuts
// down: the engine first (a block being applied completes), then the
// server, then the store.
func (f *Follower) Run(ctx context.Context) error {
	if err := f.Start(); err != nil {
		f.closeAll()
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-f.engine.Fatal():
		f.cfg.Log.Error("sync engine gave up", "err", runErr)
	}
	if err := f.Stop(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// Stop shuts everything down in order. Idempotent: a second call waits for
// the first and returns its error.
func (f *Follower) Stop() error {
	f.stopOnce.Do(func() { f.stopErr = f.shutdown() })
	return f.stopErr
}

func (f *Follower) shutdown() error {
	var errs []error
	if f.stop != nil {
		f.stop()
		f.bg.Wait()
	}
	if f.engine != nil {
		errs = append(errs, f.engine.Stop())
		f.system.Shutdown()
	}
	// Tell health checkers first, so balancers stop sending reads here;
	// then answer the held calls, empty, rather than cut them.
	f.health.Shutdown()
	if f.holds != nil {
		f.holds.Release()
	}
	api.StopGracefully(f.server, f.cfg.ShutdownGrace)
	if f.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), max(f.cfg.ShutdownGrace, time.Millisecond))
		errs = append(errs, f.http.Shutdown(ctx))
		cancel()
		f.hlis.Close() // Shutdown closes it only if Serve ran
	}
	c, p := f.st.Tips()
	errs = append(errs, f.closeAll())
	f.cfg.Log.Info("follower stopped", "committed", c, "proven", p)
	return errors.Join(errs...)
}

func (f *Follower) closeAll() error {
	var errs []error
	for _, u := range append(f.ups, f.peers...) {
		errs = append(errs, u.close())
	}
	if f.lis != nil && f.server == nil {
		errs = append(errs, f.lis.Close())
	}
	if f.st != nil {
		errs = append(errs, f.st.Close())
	}
	return errors.Join(errs...)
}

// levelHandler drops records below a level.
type levelHandler struct {
	min slog.Level
	slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return levelHandler{h.min, h.Handler.WithAttrs(a)}
}

func (h levelHandler) WithGroup(n string) slog.Handler {
	return levelHandler{h.min, h.Handler.WithGroup(n)}
}

// ClientServiceConfig is the gRPC service config that makes a grpc-go client
// balance reads round robin over followers and skip those whose health
// check says NOT_SERVING (the client must import google.golang.org/grpc/health).
const ClientServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""}}`
