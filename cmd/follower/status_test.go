package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"storesync/api"
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
