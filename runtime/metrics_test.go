package runtime

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"storesync/actors"
	"storesync/api"
	"storesync/api/storev1"
	"storesync/otel"
	"storesync/state"
)

// scrape fetches and parses a node's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums a family's samples whose labels include the given ones
// (a histogram counts its observations).
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	var sum float64
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsMove: the follower's /metrics parses, and its series move as
// blocks are applied and reads are served.
func TestMetricsMove(t *testing.T) {
	p := startPrimary(t, 20*time.Millisecond)
	f := healthFollower(t, genesisOf(p), []string{p.PublicAddr()}, nil)
	waitFor(t, 30*time.Second, "10 blocks", func() bool { c, _ := f.Store().Tips(); return c >= 10 })
	first := scrape(t, f.HTTPAddr())
	for _, name := range []string{"storesync_committed_tip", "storesync_proven_tip", "storesync_upstream_tip", "storesync_lag_blocks",
		"storesync_lag_seconds", "storesync_fetch_window_blocks", "storesync_fetch_window_bytes", "storesync_fetch_limit", "storesync_fetch_duration_seconds",
		"storesync_apply_duration_seconds", "storesync_apply_group_blocks", "storesync_sync_latency_seconds", "storesync_fetched_bytes_total"} {
		if first[name] == nil {
			t.Errorf("series %s missing", name)
		}
	}
	// A healthy link: every call of the window allowed in flight.
	if fl := first["storesync_fetch_limit"]; fl != nil {
		if v, want := fl.GetMetric()[0].GetGauge().GetValue(), float64(actors.DefaultConfig.FetchWindow); v != want {
			t.Errorf("storesync_fetch_limit %v on a healthy link, want the default window of %v", v, want)
		}
	}
	c, err := dialUpstream(f.Addr(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for range 3 {
		if _, err := c.client.Status(context.Background(), &storev1.StatusRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	c0 := value(first, "storesync_committed_tip")
	waitFor(t, 30*time.Second, "the series to move", func() bool {
		now := scrape(t, f.HTTPAddr())
		return value(now, "storesync_committed_tip") > c0 &&
			value(now, "storesync_apply_duration_seconds", "stage", "sqlite") > value(first, "storesync_apply_duration_seconds", "stage", "sqlite") &&
			value(now, "storesync_fetched_bytes_total", "kind", "useful") > value(first, "storesync_fetched_bytes_total", "kind", "useful") &&
			value(now, "storesync_read_requests_total", "method", "/storesync.v1.Store/Status", "code", "OK") >= 3 &&
			value(now, "storesync_proven_tip") > 0
	})
	if got := scrape(t, p.HTTPAddr()); value(got, "storesync_committed_tip") <= 0 {
		t.Fatal("the primary's committed tip series does not move")
	}
	if !strings.HasPrefix(progressLine(12345, 50000, 4250, 5*time.Second), "synced 12,345/50,000 (24.7%) 850 blocks/s ETA 44s") {
		t.Fatalf("progress line: %q", progressLine(12345, 50000, 4250, 5*time.Second))
	}
}

// TestCountersStartAtZero: on a fresh follower, every actor's restart
// counter and every reason's rejected-blocks counter is there at 0, so that
// an alert on increase() fires on the first event.
func TestCountersStartAtZero(t *testing.T) {
	p := startPrimary(t, 50*time.Millisecond)
	f := newFollowerCfg(t, genesisOf(p), quiet(), nil, p.PublicAddr())
	startFollower(t, f)
	resp, err := http.Get("http://" + f.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`storesync_actor_restarts_total{actor="fetcher"} 0`, `storesync_rejected_blocks_total{reason="signature"} 0`,
		`storesync_rejected_blocks_total{reason="proof"} 0`} {
		if !strings.Contains(string(body), "\n"+line+"\n") {
			t.Errorf("/metrics of a fresh follower has no line %q", line)
		}
	}
	fams := scrape(t, f.HTTPAddr())
	for _, a := range []string{actors.SupervisorName, actors.FetcherName, actors.ApplierName, actors.ProofTrackerName} {
		if !slices.Contains(otel.Actors, a) {
			t.Errorf("actor %s is not in otel.Actors", a)
		}
		if v := value(fams, "storesync_actor_restarts_total", "actor", a); v != 0 {
			t.Errorf("storesync_actor_restarts_total{actor=%q} = %v on a fresh follower, want 0", a, v)
		}
	}
	reasons := append([]string{"decode", "signature", "number", "proof"}, func() (r []string) {
		for _, c := range state.Checks {
			r = append(r, string(c))
		}
		return r
	}()...)
	for _, r := range reasons {
		if v := value(fams, "storesync_rejected_blocks_total", "reason", r); v != 0 {
			t.Errorf("storesync_rejected_blocks_total{reason=%q} = %v on a fresh follower, want 0", r, v)
		}
	}
	if n := len(fams["storesync_rejected_blocks_total"].GetMetric()); n != len(otel.RejectReasons) {
		t.Errorf("%d rejected-blocks series, want one per reason (%d)", n, len(otel.RejectReasons))
	}
}

// TestStatusUsefulBytes: /status says how many of the bytes fetched were
// useful, and what each useful byte cost.
func TestStatusUsefulBytes(t *testing.T) {
	p := startPrimary(t, 20*time.Millisecond)
	f := healthFollower(t, genesisOf(p), []string{p.PublicAddr()}, nil)
	waitFor(t, 30*time.Second, "10 blocks", func() bool { c, _ := f.Store().Tips(); return c >= 10 })
	resp, err := http.Get("http://" + f.HTTPAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st api.NodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.UsefulBytes <= 0 || st.UsefulBytes > st.Fetched {
		t.Fatalf("useful_bytes %d with fetched_bytes %d: want some, and no more than fetched", st.UsefulBytes, st.Fetched)
	}
	if want := float64(st.Fetched) / float64(st.UsefulBytes); st.FetchedPerUseful != want || want < 1 {
		t.Fatalf("fetched_per_useful %v, want fetched/useful = %v (at least 1)", st.FetchedPerUseful, want)
	}
}
