// Package cli holds what the node commands share beyond their own flags:
// the logging and tracing flags and their setup, and the signal handling.
package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"storesync/otel"
)

// Observability are the --log-level, --log-format and --otlp-endpoint flags.
type Observability struct {
	level, format, otlp *string
}

// ObservabilityFlags registers the flags on fs.
func ObservabilityFlags(fs *flag.FlagSet) *Observability {
	return &Observability{
		level:  fs.String("log-level", "info", "debug, info, warn or error"),
		format: fs.String("log-format", "text", "text or json"),
		otlp:   fs.String("otlp-endpoint", "", "send traces over OTLP/gRPC to this host:port (or URL); empty: the OTEL_EXPORTER_OTLP_* variables, or no tracing"),
	}
}

// Setup builds the logger and the tracer provider (nil when tracing is off)
// for service; flush exports the last spans and must run at exit.
func (o *Observability) Setup(service string) (log *slog.Logger, tp trace.TracerProvider, flush func(), err error) {
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
	t, err := otel.SetupTracing(context.Background(), service, *o.otlp)
	if err != nil {
		return nil, nil, nil, err
	}
	if t.Enabled {
		tp = t.Provider
	}
	flush = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = t.Shutdown(ctx)
	}
	return log, tp, flush, nil
}

// Run runs f until SIGINT or SIGTERM.
func Run(f func(ctx context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return f(ctx)
}
