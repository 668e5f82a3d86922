// Package deploy holds what operators run beside the stores, and the tests
// that keep it true: haproxy.cfg (tested in runtime), the Prometheus rules
// in prometheus/ (alerts and the recording rules the dashboard draws) with
// their promtool unit tests, and the Grafana dashboard in grafana/.
//
// The package has no code of its own. Its tests check the rules with
// promtool, then run them in a real Prometheus scraping a real primary and
// followers on loopback: a follower made to lag must raise its alert, and
// every query of the dashboard must return data. They need the prometheus
// and promtool binaries (Debian's prometheus package) and fail without
// them, so that a missing tool is never mistaken for passing rules.
package deploy
