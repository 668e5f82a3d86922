package primary

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"storesync/api"
	"storesync/certs"
	"storesync/genesis"
	"storesync/otel"
	"storesync/replicas"
	"storesync/statuspage"
	"storesync/store"
	"storesync/workload"
)

// Config is a primary's configuration; cmd/primary fills it from flags.
type Config struct {
	DataDir        string
	Listen         string               // public read API
	InternalListen string               // internal write path (loopback by default)
	HTTPListen     string               // /livez and /status; empty: none
	Produce        bool                 // run the built-in block producer
	BlockInterval  time.Duration        // time between produced blocks
	Profile        string               // workload profile of produced blocks
	Seed           uint64               // workload seed
	ProveDelay     time.Duration        // a block is proven this long after its timestamp...
	ProveJitter    time.Duration        // ...plus or minus up to this
	ShutdownGrace  time.Duration        // how long in-flight calls may finish on shutdown
	TLS            certs.Server         // the public read API's certificate; zero: plain text
	Store          store.Options        // the store's cache sizes; zero fields: store.DefaultOptions
	Tracing        trace.TracerProvider // server spans of the read API; nil: off
	// Followers lists the reporters that count toward the replicated
	// watermark without a client certificate: store ids, addresses, or
	// "any" (package replicas).
	Followers []string
	// FollowerTimeout drops a store below not heard from for this long
	// (0: replicas.DefaultTTL).
	FollowerTimeout time.Duration
	// MinCopies is the k whose watermark is watched: when it stands still
	// for WatermarkStall while the tip moves, the primary says so in its
	// log (0: 2 copies, 30 s).
	MinCopies      int
	WatermarkStall time.Duration
	// Holds bounds the GetBlockByNumber calls the read API holds for the
	// clients that ask (zero fields: api.DefaultHoldConfig).
	Holds api.HoldConfig
	Log   *slog.Logger
}

// Node is a running primary.
type Node struct {
	cfg      Config
	st       *store.Store
	gen      *workload.Generator
	prover   ed25519.PrivateKey
	public   *grpc.Server
	internal *grpc.Server
	pubLis   net.Listener
	intLis   net.Listener
	http     *http.Server
	httpLis  net.Listener
	metrics  *otel.Metrics
	replicas *replicas.Registry
	holds    *api.Holds
	page     *statuspage.Page // the status page at /; nil without an HTTP listener
	// health is the public server's gRPC health service: SERVING while
	// the node runs, NOT_SERVING from the start of its shutdown.
	health *grpchealth.Server
}

// New opens the store and binds both listeners; Run starts the work.
func New(cfg Config) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	profile, err := workload.ProfileByName(cfg.Profile)
	if err != nil {
		return nil, err
	}
	// Checked before anything is opened: a bad certificate stops the
	// primary at once, naming the flag and the file.
	tlsCfg, err := cfg.TLS.Config(time.Now(), cfg.Log)
	if err != nil {
		return nil, err
	}
	trust, err := replicas.ParseTrust(cfg.Followers)
	if err != nil {
		return nil, err
	}
	if cfg.MinCopies <= 0 {
		cfg.MinCopies = DefaultMinCopies
	}
	if cfg.WatermarkStall <= 0 {
		cfg.WatermarkStall = DefaultWatermarkStall
	}
	if cfg.Produce && cfg.BlockInterval <= 0 {
		return nil, fmt.Errorf("block interval must be positive, got %s", cfg.BlockInterval)
	}
	g, err := genesis.Load(filepath.Join(cfg.DataDir, GenesisFile))
	if err != nil {
		return nil, fmt.Errorf("%w (run `primary init --data-dir %s` first)", err, cfg.DataDir)
	}
	n := &Node{cfg: cfg}
	var producer ed25519.PrivateKey
	if cfg.Produce {
		producer, err = ReadKey(filepath.Join(cfg.DataDir, ProducerFile))
		if err != nil {
			return nil, err
		}
		if err := checkKey(ProducerFile, producer, g.ProducerKey); err != nil {
			return nil, err
		}
		n.prover, err = ReadKey(filepath.Join(cfg.DataDir, ProverFile))
		if err != nil {
			return nil, err
		}
		if err := checkKey(ProverFile, n.prover, g.ProverKey); err != nil {
			return nil, err
		}
	}
	if n.st, err = store.OpenWith(filepath.Join(cfg.DataDir, StoreDir), g, cfg.Store); err != nil {
		return nil, err
	}
	if cfg.Produce {
		n.gen = workload.NewGenerator(cfg.Seed, profile, producer, n.st)
	}
	if n.pubLis, err = net.Listen("tcp", cfg.Listen); err != nil {
		n.st.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if n.intLis, err = net.Listen("tcp", cfg.InternalListen); err != nil {
		n.pubLis.Close()
		n.st.Close()
		return nil, fmt.Errorf("listen internal %s: %w", cfg.InternalListen, err)
	}
	id, err := replicas.LoadID(cfg.DataDir)
	if err != nil {
		n.pubLis.Close()
		n.intLis.Close()
		n.st.Close()
		return nil, err
	}
	n.replicas = replicas.New(replicas.Config{ID: id, Addr: n.pubLis.Addr().String(), Tips: n.st.Tips, Trust: trust,
		TTL: cfg.FollowerTimeout, Log: cfg.Log})
	n.metrics = otel.NewMetrics()
	n.metrics.Tips(n.st.Tips())
	n.metrics.Register(n.replicas)
	if cfg.HTTPListen != "" {
		if n.httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			n.pubLis.Close()
			n.intLis.Close()
			n.st.Close()
			return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPListen, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { api.WriteJSON(w, n.Status()) })
		mux.Handle("GET /metrics", n.metrics.Handler())
		n.page = statuspage.New(n, statuspage.Config{})
		n.page.Mount(mux)
		n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}
	n.holds = api.NewHolds(n.st, cfg.Holds)
	for _, c := range n.holds.Collectors() {
		n.metrics.Register(c)
	}
	wire := otel.NewWire()
	n.metrics.Register(wire)
	popts := append(api.PublicServerOptions(), grpc.StatsHandler(wire), grpc.ChainUnaryInterceptor(n.metrics.UnaryInterceptor(), n.replicas.UnaryServerInterceptor(),
		n.holds.UnaryServerInterceptor()))
	if tlsCfg != nil {
		popts = append(popts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	if cfg.Tracing != nil {
		// A follower's fetch carries its block's trace context; the server
		// span joins that trace.
		popts = append(popts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(cfg.Tracing))))
	}
	n.public = grpc.NewServer(popts...)
	api.RegisterPublic(n.public, n.st)
	n.health = grpchealth.NewServer()
	healthpb.RegisterHealthServer(n.public, n.health)
	n.internal = grpc.NewServer(api.InternalServerOptions()...)
	api.RegisterInternal(n.internal, n.st)
	return n, nil
}

// Status is what /status serves: the primary is the chain's source, so it is
// always at the chain tip.
func (n *Node) Status() api.NodeStatus {
	c, p := n.st.Tips()
	return api.NodeStatus{Role: "primary", Chain: n.st.Genesis().ChainID, Committed: c, Proven: p, Ready: true,
		LagKnown: true, ChainTip: c, ChainTipSrc: "local", Reason: "primary: the source of the chain", Updated: time.Now(),
		Status: n.replicas.Status()}
}

// Replicas is the primary's table of the stores below it.
func (n *Node) Replicas() *replicas.Registry { return n.replicas }

// Defaults of Config.MinCopies and Config.WatermarkStall.
const (
	DefaultMinCopies      = 2
	DefaultWatermarkStall = 30 * time.Second
)

// watchWatermark logs when the watermark for MinCopies stands still for
// WatermarkStall while the primary's tip moves on, and when it moves again.
func (n *Node) watchWatermark(ctx context.Context) {
	s := replicas.Stall{After: n.cfg.WatermarkStall}
	every := min(max(n.cfg.WatermarkStall/10, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, _ := n.st.Tips()
		wm, ok := n.replicas.Watermark(n.cfg.MinCopies)
		switch s.Step(time.Now(), c, wm, ok) {
		case replicas.StallBegan:
			args := []any{"copies", n.cfg.MinCopies, "since", s.Since().Format(time.RFC3339), "committed", c}
			if ok {
				args = append(args, "watermark", wm)
			} else {
				args = append(args, "watermark", "none")
			}
			n.cfg.Log.Warn("replicated watermark stopped moving while the tip moves: recent blocks are not backed up as asked", args...)
		case replicas.StallEnded:
			n.cfg.Log.Info("replicated watermark moves again", "copies", n.cfg.MinCopies, "watermark", wm, "committed", c)
		}
	}
}

// HTTPAddr is the bound address of the HTTP listener ("" if none).
func (n *Node) HTTPAddr() string {
	if n.httpLis == nil {
		return ""
	}
	return n.httpLis.Addr().String()
}

// PublicAddr is the bound address of the read API.
func (n *Node) PublicAddr() string { return n.pubLis.Addr().String() }

// InternalAddr is the bound address of the write path.
func (n *Node) InternalAddr() string { return n.intLis.Addr().String() }

// Store is the node's store.
func (n *Node) Store() *store.Store { return n.st }

// Run serves and produces until ctx ends, then shuts down in order: stop
// producing and proving (a block being committed completes), drain the
// servers, close the store.
func (n *Node) Run(ctx context.Context) error {
	log := n.cfg.Log
	c, p := n.st.Tips()
	log.Info("primary started", "chain", n.st.Genesis().ChainID, "committed", c, "proven", p,
		"listen", n.PublicAddr(), "tls", n.cfg.TLS.Enabled(), "internal", n.InternalAddr(), "produce", n.cfg.Produce,
		"store_id", n.replicas.ID())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, s := range []struct {
		srv *grpc.Server
		lis net.Listener
	}{{n.public, n.pubLis}, {n.internal, n.intLis}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- err
			}
		}()
	}
	if n.http != nil {
		go func() { _ = n.http.Serve(n.httpLis) }()
	}
	work, stopWork := context.WithCancel(ctx)
	var workers sync.WaitGroup
	workers.Add(1)
	go func() { defer workers.Done(); n.watchWatermark(work) }()
	if n.page != nil {
		workers.Add(1)
		go func() { defer workers.Done(); n.page.Run(work) }()
	}
	if n.cfg.Produce {
		workers.Add(2)
		go func() { defer workers.Done(); produce(work, n.st, n.gen, n.cfg.BlockInterval, n.metrics, log) }()
		go func() {
			defer workers.Done()
			prove(work, n.st, n.prover, n.cfg.Seed, n.cfg.ProveDelay, n.cfg.ProveJitter, n.metrics, log)
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	stopWork()
	workers.Wait()
	// NOT_SERVING first, then the held calls answered (empty), then the
	// servers drained.
	n.health.Shutdown()
	n.holds.Release()
	for _, srv := range []*grpc.Server{n.public, n.internal} {
		api.StopGracefully(srv, n.cfg.ShutdownGrace)
	}
	wg.Wait()
	if n.http != nil {
		hctx, cancel := context.WithTimeout(context.Background(), max(n.cfg.ShutdownGrace, time.Millisecond))
		_ = n.http.Shutdown(hctx)
		cancel()
	}
	c, p = n.st.Tips()
	if err := n.st.Close(); err != nil && runErr == nil {
		runErr = err
	}
	log.Info("primary stopped", "committed", c, "proven", p)
	return runErr
}
