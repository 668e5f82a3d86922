package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"storesync/api"
	"storesync/replicas"
)

// TestStatusReport: the report reads every store's /status over HTTP, marks
// the unreachable, and computes lag and the replicated watermark from the
// followers' tips.
func TestStatusReport(t *testing.T) {
	serve := func(st api.NodeStatus) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/status" {
				http.NotFound(w, r)
				return
			}
			api.WriteJSON(w, st)
		}))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	stores := []string{
		serve(api.NodeStatus{Role: "primary", Committed: 120, Proven: 110, Ready: true}),
		serve(api.NodeStatus{Role: "follower", Committed: 119, Proven: 110, Ready: true, Upstreams: map[string]uint64{"p": 119}}),
		serve(api.NodeStatus{Role: "follower", Committed: 117, Proven: 109, Ready: false, Reason: "lag 3"}),
		serve(api.NodeStatus{Role: "follower", Committed: 118, Proven: 110, Ready: true}),
		"127.0.0.1:1", // nothing listens
	}
	rep := collect(context.Background(), stores, 2, time.Second)
	if rep.Highest != 120 || !rep.Confirmed || rep.Watermark != 118 {
		t.Fatalf("highest %d, watermark %d (%v); want 120 and 118", rep.Highest, rep.Watermark, rep.Confirmed)
	}
	if rep.Stores[2].Lag != 3 || rep.Stores[4].Error == "" || rep.Stores[4].Status != nil {
		t.Fatalf("rows: %+v", rep.Stores)
	}
	var out strings.Builder
	render(&out, rep)
	for _, want := range []string{"COMMITTED", "unreachable", "block 118 is committed on at least 2 followers"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
	if rep := collect(context.Background(), stores[:2], 2, time.Second); rep.Confirmed {
		t.Fatal("watermark claimed with one follower for two copies")
	}
}

// TestStatusTreeFromPrimary: given the primary alone, the report prints
// the stores below it from its table (each under the store it reports to)
// and takes the watermark from the primary's table.
func TestStatusTreeFromPrimary(t *testing.T) {
	u := func(n uint64) *uint64 { return &n }
	now := time.Now()
	st := api.NodeStatus{Role: "primary", Committed: 120, Proven: 110, Ready: true, Status: replicas.Status{
		ID: "p0",
		Followers: []replicas.Row{
			{ID: "aaa", Parent: "p0", Addr: "127.0.0.1:7200", Committed: 120, Proven: 110, Depth: 1, Heard: now, Verified: true, Subject: "listed"},
			{ID: "bbb", Parent: "p0", Addr: "127.0.0.1:7300", Committed: 118, Proven: 110, Depth: 1, Heard: now, Verified: true, Subject: "listed"},
			{ID: "ccc", Parent: "aaa", Addr: "127.0.0.1:7400", Committed: 119, Proven: 109, Depth: 2, Heard: now, Verified: false},
		},
		Watermarks: map[string]*uint64{"1": u(120), "2": u(118), "3": nil},
	}}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.WriteJSON(w, st) }))
	t.Cleanup(s.Close)
	rep := collect(context.Background(), []string{s.URL}, 2, time.Second)
	if !rep.Confirmed || rep.Watermark != 118 || rep.WatermarkFrom != s.URL {
		t.Fatalf("watermark %d (%v) from %q; want 118 from the primary's table", rep.Watermark, rep.Confirmed, rep.WatermarkFrom)
	}
	var out strings.Builder
	render(&out, rep)
	text := out.String()
	a, c, b := strings.Index(text, "  aaa"), strings.Index(text, "    ccc"), strings.Index(text, "  bbb")
	if a < 0 || c < 0 || b < 0 || !(a < c && c < b) {
		t.Fatalf("want aaa, then ccc under it, then bbb:\n%s", text)
	}
	for _, want := range []string{"no (unverified)", "k=1 120, k=2 118, k=3 none", "block 118 is durable on at least 2 followers"} {
		if !strings.Contains(text, want) {
			t.Fatalf("output lacks %q:\n%s", want, text)
		}
	}
	if rep := collect(context.Background(), []string{s.URL}, 3, time.Second); rep.Confirmed {
		t.Fatal("a watermark for 3 copies claimed from a table that has none")
	}
}
