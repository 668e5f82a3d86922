// Package otel holds the follower's and the primary's observability: the
// Prometheus metrics (metrics.go) and the OpenTelemetry tracing (trace.go:
// OTLP export, sampling, a shutdown bounded by its deadline; ids.go: the
// IDs a block's root span takes over from the trace its call went out in).
package otel
