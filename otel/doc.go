// Package otel holds the follower's and the primary's observability: the
// Prometheus metrics (metrics.go) and, to come, the OpenTelemetry traces of
// each block's journey.
package otel
