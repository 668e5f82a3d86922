package replicas

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// TestTipsOnlyReportKeepsSummary: a report with the tips alone updates the
// reporter's tips and leaves its last summary standing, aged from when it
// came; a summary with no stores clears it.
func TestTipsOnlyReportKeepsSummary(t *testing.T) {
	tb := NewTable("self", ttl)
	observe(t, tb, Report{ID: "A", Committed: 5, Summary: true, Below: []Entry{{ID: "C", Parent: "A", Committed: 4, Depth: 1, Verified: true}}}, "any", t0)
	observe(t, tb, Report{ID: "A", Committed: 9}, "any", t0.Add(3*time.Second))
	rows := tb.Rows(t0.Add(3*time.Second), big, big)
	a, okA := rowOf(rows, "A")
	c, okC := rowOf(rows, "C")
	if !okA || !okC || a.Committed != 9 || c.Committed != 4 || !c.Heard.Equal(t0) || !a.Heard.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("rows %+v: want A at 9 heard now, C at 4 heard when the summary came", rows)
	}
	// The summary ages out on its own time while the tips keep coming.
	observe(t, tb, Report{ID: "A", Committed: 10}, "any", t0.Add(ttl+time.Second))
	if _, ok := rowOf(tb.Rows(t0.Add(ttl+time.Second), big, big), "C"); ok {
		t.Fatal("a summary older than the ttl still shows its stores")
	}
	observe(t, tb, Report{ID: "A", Committed: 11, Summary: true, Below: []Entry{{ID: "C", Parent: "A", Depth: 1}}}, "any", t0.Add(ttl+2*time.Second))
	observe(t, tb, Report{ID: "A", Committed: 12, Summary: true}, "any", t0.Add(ttl+3*time.Second))
	if rows := tb.Rows(t0.Add(ttl+3*time.Second), big, big); len(rows) != 1 {
		t.Fatalf("an empty summary left %+v", rows)
	}
}

// TestClientInterceptorSendsSummarySparingly: every call through a
// connection carries the tips; the summary goes on the first and then at
// most once per SummaryEvery.
func TestClientInterceptorSendsSummarySparingly(t *testing.T) {
	g := New(Config{ID: "me", Addr: "127.0.0.1:7200", Tips: func() (uint64, uint64) { return 7, 5 }})
	g.mu.Lock()
	if err := g.table.Observe(Report{ID: "below", Committed: 6}, "any", time.Now()); err != nil {
		t.Fatal(err)
	}
	g.mu.Unlock()
	icpt := g.UnaryClientInterceptor()
	var got []Report
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		md, _ := metadata.FromOutgoingContext(ctx)
		r, err := Decode([]byte(md.Get(MetadataKey)[0]))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
		return nil
	}
	for range 11 {
		if err := icpt(context.Background(), "/m", nil, nil, nil, invoker); err != nil {
			t.Fatal(err)
		}
	}
	summaries := 0
	for i, r := range got {
		if r.ID != "me" || r.Committed != 7 || r.Proven != 5 || r.Addr != "127.0.0.1:7200" {
			t.Fatalf("call %d carried %+v", i, r)
		}
		if r.Summary {
			summaries++
			if len(r.Below) != 1 || r.Below[0].ID != "below" {
				t.Fatalf("call %d: summary %+v, want the one store below", i, r.Below)
			}
		}
	}
	// Eleven calls back to back span far less than SummaryEvery; allow one
	// more on a machine that stalls between two of them.
	if !got[0].Summary || summaries > 2 {
		t.Fatalf("%d of %d calls carried the summary (the first: %v); want the first and hardly any other", summaries, len(got), got[0].Summary)
	}
	// Another connection's interceptor sends its own first summary.
	got = nil
	if err := g.UnaryClientInterceptor()(context.Background(), "/m", nil, nil, nil, invoker); err != nil || !got[0].Summary {
		t.Fatalf("a new connection's first call: %+v (%v)", got, err)
	}
}
