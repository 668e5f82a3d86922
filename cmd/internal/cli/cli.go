// Package cli holds what the node commands share beyond their own flags:
// the logging and tracing flags and their setup, and the signal handling.
package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"storesync/api"
	"storesync/merkle"
	"storesync/otel"
	"storesync/replicas"
	"storesync/store"
)

// minFlush is the least time the last spans get at exit, even when the
// node's own shutdown used up the grace: a collector that answers takes
// milliseconds, and one that does not is cut off there.
const minFlush = 250 * time.Millisecond

// Observability are the --log-level, --log-format, --otlp-endpoint and
// --trace-sample flags, and the shutdown of what they set up.
type Observability struct {
	level, format, otlp *string
	sample              *float64

	stopOnce sync.Once
	stopAt   time.Time // when the shutdown began: the signal, or Run's end
}

// StoreFlags registers the flags of the store's cache sizes on fs (in MiB);
// with the fetch window and a fixed overhead they bound a store's memory
// whatever the size of its state.
func StoreFlags(fs *flag.FlagSet, o *store.Options) {
	d := store.DefaultOptions
	mib := func(p *int64, name string, def int64, usage string) {
		*p = def
		fs.Func(name, fmt.Sprintf("%s, MiB (default %d)", usage, def>>20), func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("want a positive number of MiB, got %q", v)
			}
			*p = n << 20
			return nil
		})
	}
	mib(&o.NodeCacheBytes, "node-cache", d.NodeCacheBytes, "decoded account and nullifier tree nodes kept in memory below the pinned levels")
	o.PinnedLevels = d.PinnedLevels
	fs.Func("pinned-levels", fmt.Sprintf("levels at the top of each tree that stay decoded in memory once read, at most 2^n nodes a tree, about %d MiB a tree at the default (default %d, at most %d)",
		(merkle.PinnedBytes(d.PinnedLevels)+1<<20-1)>>20, d.PinnedLevels, merkle.MaxPinLevels), func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > merkle.MaxPinLevels {
			return fmt.Errorf("want a number of levels from 1 to %d, got %q", merkle.MaxPinLevels, v)
		}
		o.PinnedLevels = n
		return nil
	})
	o.RecordLevels = d.RecordLevels
	fs.Func("record-levels", fmt.Sprintf("levels of a tree one record of the state database spans: a key's update rewrites and a lookup reads one record per band of this many levels (default %d, at most %d)",
		d.RecordLevels, merkle.MaxRecordLevels), func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > merkle.MaxRecordLevels {
			return fmt.Errorf("want a number of levels from 1 to %d, got %q", merkle.MaxRecordLevels, v)
		}
		o.RecordLevels = n
		return nil
	})
	mib(&o.StateCacheBytes, "state-cache", d.StateCacheBytes, "block cache of the state database (tree nodes, note index)")
	mib(&o.SQLiteCacheBytes, "sqlite-cache", d.SQLiteCacheBytes, "SQLite page cache, shared out among its connections")
}

// maxMemoryLimitMiB keeps --memory-limit's bytes within an int64.
const maxMemoryLimitMiB = 1 << 40

// MemoryFlag registers --memory-limit on fs. Its value is applied by
// SetMemoryLimit once the flags are parsed.
func MemoryFlag(fs *flag.FlagSet) *int64 {
	var mib int64
	fs.Func("memory-limit", "Go heap limit, MiB: the collector works harder near it (0, the default: twice --node-cache, plus both trees' pinned levels at their bound, the fetch window and 256; -1: none, or GOMEMLIMIT)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 || n > maxMemoryLimitMiB {
			return fmt.Errorf("want a number of MiB up to %d, 0 (derived from the caches) or -1 (none), got %q", maxMemoryLimitMiB, v)
		}
		mib = n
		return nil
	})
	return &mib
}

// SetMemoryLimit applies --memory-limit: mib MiB, or for 0 the limit the
// store's caches and the fetch window call for. It returns the limit set
// (0: none, GOMEMLIMIT's or the runtime's own).
func SetMemoryLimit(mib int64, o store.Options, windowBytes int64) int64 {
	if mib < 0 || (mib == 0 && os.Getenv("GOMEMLIMIT") != "") {
		return 0
	}
	limit := mib << 20
	if mib == 0 {
		limit = store.MemoryLimit(o, windowBytes)
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// ObservabilityFlags registers the flags on fs.
func ObservabilityFlags(fs *flag.FlagSet) *Observability {
	return &Observability{
		level:  fs.String("log-level", "info", "debug, info, warn or error"),
		format: fs.String("log-format", "text", "text or json"),
		otlp:   fs.String("otlp-endpoint", "", "send traces over OTLP/gRPC to this host:port (or URL); empty: the OTEL_EXPORTER_OTLP_* variables, or no tracing"),
		sample: SampleFlag(fs),
	}
}

// SampleFlag registers --trace-sample on fs.
func SampleFlag(fs *flag.FlagSet) *float64 {
	ratio := 1.0
	fs.Func("trace-sample", "ratio of block traces (and probes) sampled, 0 to 1, decided at the root and followed by every span of the trace, the upstream's server span included (default 1)", func(v string) error {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
			return fmt.Errorf("want a ratio from 0 to 1, got %q", v)
		}
		ratio = r
		return nil
	})
	return &ratio
}

// Setup builds the logger and the tracer provider (nil when tracing is off)
// for service; flush exports the last spans and must run at exit. grace is
// the node's --shutdown-grace: flush ends within it of the shutdown's start
// (see Run), dropping what a collector that does not answer has not taken.
func (o *Observability) Setup(service string, grace time.Duration) (log *slog.Logger, tp trace.TracerProvider, flush func(), err error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*o.level)); err != nil {
		return nil, nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch *o.format {
	case "text":
		log = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		return nil, nil, nil, fmt.Errorf("--log-format: want text or json, got %q", *o.format)
	}
	t, err := otel.SetupTracing(context.Background(), otel.TraceConfig{Service: service, Endpoint: *o.otlp, Sample: *o.sample, Log: log})
	if err != nil {
		return nil, nil, nil, err
	}
	if t.Enabled {
		tp = t.Provider
	}
	flush = func() {
		o.stopping()
		ctx, cancel := context.WithDeadline(context.Background(), FlushDeadline(o.stopAt, grace, time.Now()))
		defer cancel()
		_ = t.Shutdown(ctx)
	}
	return log, tp, flush, nil
}

// FlushDeadline is when the last spans' export gives up: grace after the
// shutdown began at stopAt, but never sooner than minFlush from now.
func FlushDeadline(stopAt time.Time, grace time.Duration, now time.Time) time.Time {
	return latest(stopAt.Add(grace), now.Add(minFlush))
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// stopping notes that the shutdown begins now, if it had not already.
func (o *Observability) stopping() { o.stopOnce.Do(func() { o.stopAt = time.Now() }) }

// Run runs f until SIGINT or SIGTERM. The signal (or f's return, if it
// comes first) starts the shutdown whose grace flush keeps to.
func (o *Observability) Run(f func(ctx context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer context.AfterFunc(ctx, o.stopping)()
	err := f(ctx)
	o.stopping()
	return err
}

// ReportFlags registers --follower and --follower-timeout on fs: who counts
// toward the replicated watermark, and when a store below is forgotten.
func ReportFlags(fs *flag.FlagSet, followers *[]string, timeout *time.Duration) {
	fs.Func("follower", "a store below that counts toward the replicated watermark without a client certificate: its store id or the address it serves on; repeatable or comma-separated; \"any\" trusts every reporter (with --client-ca, a verified certificate counts instead)", func(v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("empty value")
		}
		*followers = append(*followers, v)
		return nil
	})
	fs.DurationVar(timeout, "follower-timeout", replicas.DefaultTTL, "a store below not heard from for this long is dropped from the table and the watermarks")
}

// HoldFlags registers the bounds of held GetBlockByNumber calls on fs.
func HoldFlags(fs *flag.FlagSet, h *api.HoldConfig) {
	d := api.DefaultHoldConfig
	fs.DurationVar(&h.MaxWait, "max-hold", d.MaxWait, "longest a GetBlockByNumber asking to be held (metadata storesync-hold) waits for its block or proof")
	fs.IntVar(&h.MaxHeld, "max-held-calls", d.MaxHeld, "calls held at once over all connections; more are answered at once, as if they had not asked")
	fs.IntVar(&h.MaxPerConn, "max-held-per-conn", d.MaxPerConn, "calls held at once on one client connection")
}
