package replicas

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// t0 is the fixed start of every test's clock.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	ttl = 10 * time.Second
	big = math.MaxUint64 // own tips so high nothing is clamped
)

func observe(t *testing.T, tb *Table, r Report, subject string, now time.Time) {
	t.Helper()
	if err := tb.Observe(r, subject, now); err != nil {
		t.Fatalf("Observe(%s): %v", r.ID, err)
	}
}

func rowOf(rows []Row, id string) (Row, bool) {
	for _, r := range rows {
		if r.ID == id {
			return r, true
		}
	}
	return Row{}, false
}

func ids(rows []Row) []string {
	var s []string
	for _, r := range rows {
		s = append(s, r.ID)
	}
	return s
}

// sameRows compares field by field, times with Equal.
func sameRows(t *testing.T, got, want []Row) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows %v, want %d %v", len(got), ids(got), len(want), ids(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.Heard.Equal(w.Heard) {
			t.Errorf("row %d (%s): heard %v, want %v", i, g.ID, g.Heard, w.Heard)
		}
		g.Heard, w.Heard = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestTableDirectReporterAndSummaryEntries(t *testing.T) {
	tb := NewTable("self", ttl)
	if tb.TTL() != ttl {
		t.Fatalf("TTL() = %v, want %v", tb.TTL(), ttl)
	}
	observe(t, tb, Report{ID: "a", Addr: "a:1", Committed: 10, Proven: 8, Below: []Entry{
		{ID: "b", Parent: "a", Addr: "b:1", Committed: 7, Proven: 5, Depth: 1, AgeMS: 1500, Verified: true},
		{ID: "c", Parent: "b", Addr: "c:1", Committed: 6, Proven: 4, Depth: 2, AgeMS: 0, Verified: true},
	}}, "listed", t0)

	sameRows(t, tb.Rows(t0.Add(time.Second), big, big), []Row{
		{ID: "a", Parent: "self", Addr: "a:1", Committed: 10, Proven: 8, Depth: 1, Heard: t0, Verified: true, Subject: "listed"},
		{ID: "b", Parent: "a", Addr: "b:1", Committed: 7, Proven: 5, Depth: 2, Heard: t0.Add(-1500 * time.Millisecond), Verified: true, Subject: "listed"},
		{ID: "c", Parent: "b", Addr: "c:1", Committed: 6, Proven: 4, Depth: 3, Heard: t0, Verified: true, Subject: "listed"},
	})
	if n := len(NewTable("self", ttl).Rows(t0, big, big)); n != 0 {
		t.Fatalf("empty table has %d rows", n)
	}
}

func TestTableRowsOrderedByDepthThenID(t *testing.T) {
	tb := NewTable("self", ttl)
	observe(t, tb, Report{ID: "z", Below: []Entry{{ID: "a2", Parent: "z", Depth: 1}}}, "any", t0)
	observe(t, tb, Report{ID: "m", Below: []Entry{{ID: "a3", Parent: "x", Depth: 2}, {ID: "b2", Parent: "m", Depth: 1}}}, "", t0)
	observe(t, tb, Report{ID: "b"}, "any", t0)
	got := strings.Join(ids(tb.Rows(t0, big, big)), " ")
	if want := "b m z a2 b2 a3"; got != want {
		t.Fatalf("rows %q, want %q", got, want)
	}
}

// C follows both A and B; A and B both report here. C is one row: at its
// shortest depth with that path's parent (through A), with the tips of the
// latest word (through B).
func TestTableDedupe(t *testing.T) {
	tb := NewTable("self", ttl)
	now := t0.Add(time.Second)
	observe(t, tb, Report{ID: "A", Committed: 20, Proven: 20, Below: []Entry{
		{ID: "C", Parent: "A", Addr: "c:1", Committed: 5, Proven: 4, Depth: 1, AgeMS: 3000, Verified: true}, // heard t0-2s
	}}, "listed", now)
	observe(t, tb, Report{ID: "B", Committed: 20, Proven: 20, Below: []Entry{
		{ID: "D", Parent: "B", Committed: 9, Proven: 9, Depth: 1, Verified: true},
		{ID: "C", Parent: "D", Addr: "c:2", Committed: 7, Proven: 6, Depth: 2, AgeMS: 500, Verified: true}, // heard t0+0.5s
	}}, "cert CN=B", now)
	// An unverified reporter with fresher, higher word of C does not count.
	observe(t, tb, Report{ID: "E", Below: []Entry{
		{ID: "C", Parent: "E", Addr: "evil:1", Committed: 100, Proven: 100, Depth: 1, AgeMS: 0, Verified: true},
	}}, "", now.Add(time.Second))

	for range 20 { // map order must not matter
		rows := tb.Rows(now.Add(time.Second), big, big)
		if got := strings.Join(ids(rows), " "); got != "A B E C D" {
			t.Fatalf("rows %q, want one row per store: A B E C D", got)
		}
		c, _ := rowOf(rows, "C")
		want := Row{ID: "C", Parent: "A", Addr: "c:2", Committed: 7, Proven: 6, Depth: 2,
			Heard: t0.Add(500 * time.Millisecond), Verified: true, Subject: "cert CN=B"}
		sameRows(t, []Row{c}, []Row{want})
	}
}

// A store reporting directly and also named in another's summary is one
// row at depth 1.
func TestTableDedupeDirectAndSummarised(t *testing.T) {
	tb := NewTable("self", ttl)
	observe(t, tb, Report{ID: "C", Committed: 3}, "any", t0)
	observe(t, tb, Report{ID: "A", Below: []Entry{{ID: "C", Parent: "A", Committed: 4, Depth: 1, Verified: true}}}, "any", t0.Add(time.Second))
	rows := tb.Rows(t0.Add(time.Second), big, big)
	c, ok := rowOf(rows, "C")
	if len(rows) != 2 || !ok {
		t.Fatalf("rows %v, want A and C", ids(rows))
	}
	if c.Depth != 1 || c.Committed != 4 || !c.Heard.Equal(t0.Add(time.Second)) {
		t.Fatalf("C = %+v, want depth 1 with the latest word (committed 4)", c)
	}
}

func TestTableVerifiedBeatsUnverified(t *testing.T) {
	verified := Report{ID: "A", Addr: "a:1", Committed: 10, Proven: 9}
	impostor := Report{ID: "A", Addr: "evil:1", Committed: 100, Proven: 100}
	for _, impostorFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("impostor first %v", impostorFirst), func(t *testing.T) {
			tb := NewTable("self", ttl)
			if impostorFirst {
				observe(t, tb, impostor, "", t0)
				observe(t, tb, verified, "listed", t0.Add(time.Second))
			} else {
				observe(t, tb, verified, "listed", t0)
				observe(t, tb, impostor, "", t0.Add(time.Second))
			}
			rows := tb.Rows(t0.Add(2*time.Second), big, big)
			if len(rows) != 1 {
				t.Fatalf("rows %v, want only A", ids(rows))
			}
			a := rows[0]
			if !a.Verified || a.Committed != 10 || a.Proven != 9 || a.Addr != "a:1" || a.Subject != "listed" {
				t.Fatalf("A = %+v, want the verified report", a)
			}
			h, ok := tb.reports[reporterKey{id: "A", verified: true}]
			if !ok || !reflect.DeepEqual(h.r, verified) || h.subject != "listed" {
				t.Fatalf("verified report stored as %+v (%v), want %+v", h, ok, verified)
			}
			if len(tb.reports) != 2 {
				t.Fatalf("%d reports kept, want the verified and the unverified one apart", len(tb.reports))
			}
			if wm, ok := Watermark(rows, 1); !ok || wm != 10 {
				t.Fatalf("Watermark = %d, %v; want 10", wm, ok)
			}
		})
	}
}

// An unverified summary entry of a store some verified path knows changes
// nothing either, whatever its flag.
func TestTableUnverifiedSummaryCannotOverrideVerified(t *testing.T) {
	tb := NewTable("self", ttl)
	observe(t, tb, Report{ID: "A", Committed: 10}, "listed", t0)
	observe(t, tb, Report{ID: "X", Below: []Entry{{ID: "A", Parent: "X", Committed: 99, Depth: 1, Verified: true}}}, "", t0.Add(time.Second))
	a, _ := rowOf(tb.Rows(t0.Add(time.Second), big, big), "A")
	if !a.Verified || a.Committed != 10 || a.Depth != 1 || a.Parent != "self" {
		t.Fatalf("A = %+v, want its verified direct row", a)
	}
}

func TestTableEntryVerifiedOnlyIfBoth(t *testing.T) {
	for _, c := range []struct {
		subject string
		flag    bool
		want    bool
	}{
		{"", false, false},
		{"", true, false},
		{"listed", false, false},
		{"listed", true, true},
	} {
		t.Run(fmt.Sprintf("subject %q flag %v", c.subject, c.flag), func(t *testing.T) {
			tb := NewTable("self", ttl)
			observe(t, tb, Report{ID: "A", Below: []Entry{{ID: "B", Parent: "A", Depth: 1, Verified: c.flag}}}, c.subject, t0)
			rows := tb.Rows(t0, big, big)
			b, ok := rowOf(rows, "B")
			if !ok {
				t.Fatalf("no row for B in %v", ids(rows))
			}
			if b.Verified != c.want {
				t.Fatalf("B verified %v, want %v", b.Verified, c.want)
			}
			if a, _ := rowOf(rows, "A"); a.Verified != (c.subject != "") {
				t.Fatalf("A verified %v with subject %q", a.Verified, c.subject)
			}
		})
	}
}

func TestTableCycle(t *testing.T) {
	for _, r := range []Report{
		{ID: "self", Committed: 5},
		{ID: "X", Below: []Entry{{ID: "Y", Parent: "X", Depth: 1}, {ID: "self", Parent: "Y", Depth: 2}}},
	} {
		t.Run(r.ID, func(t *testing.T) {
			tb := NewTable("self", ttl)
			observe(t, tb, Report{ID: "A", Committed: 3}, "listed", t0)
			before := maps.Clone(tb.reports)
			// Late enough that taking a report would expire A.
			err := tb.Observe(r, "listed", t0.Add(2*ttl))
			if !errors.Is(err, ErrCycle) {
				t.Fatalf("Observe = %v, want ErrCycle", err)
			}
			if !reflect.DeepEqual(tb.reports, before) {
				t.Fatalf("a rejected report changed the table: %v, was %v", tb.reports, before)
			}
			if got := ids(tb.Rows(t0, big, big)); !reflect.DeepEqual(got, []string{"A"}) {
				t.Fatalf("rows %v, want [A]", got)
			}
		})
	}
}

func TestTableClamp(t *testing.T) {
	for _, c := range []struct {
		name         string
		c, p         uint64 // claimed
		ownC, ownP   uint64
		wantC, wantP uint64
		wantClamped  bool
	}{
		{"below", 5, 4, 10, 10, 5, 4, false},
		{"equal", 10, 10, 10, 10, 10, 10, false},
		{"committed above", 12, 4, 10, 10, 10, 4, true},
		{"proven above", 5, 11, 10, 10, 5, 10, true},
		{"both above", 20, 20, 10, 7, 10, 7, true},
		{"own zero", 1, 0, 0, 0, 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := NewTable("self", ttl)
			observe(t, tb, Report{ID: "A", Committed: c.c, Proven: c.p,
				Below: []Entry{{ID: "B", Parent: "A", Committed: c.c, Proven: c.p, Depth: 1, Verified: true}}}, "any", t0)
			rows := tb.Rows(t0, c.ownC, c.ownP)
			if len(rows) != 2 {
				t.Fatalf("rows %v", ids(rows))
			}
			for _, r := range rows {
				if r.Committed != c.wantC || r.Proven != c.wantP || r.Clamped != c.wantClamped {
					t.Errorf("%s: committed %d proven %d clamped %v; want %d %d %v",
						r.ID, r.Committed, r.Proven, r.Clamped, c.wantC, c.wantP, c.wantClamped)
				}
			}
			// The watermark uses the clamped tip.
			if wm, ok := Watermark(rows, 2); !ok || wm != c.wantC {
				t.Errorf("Watermark = %d, %v; want %d", wm, ok, c.wantC)
			}
		})
	}
}

func TestTableExpiry(t *testing.T) {
	tb := NewTable("self", ttl)
	observe(t, tb, Report{ID: "A"}, "listed", t0)
	observe(t, tb, Report{ID: "B", Below: []Entry{
		{ID: "X", Parent: "B", Depth: 1, AgeMS: 5000}, // heard t0+3s
		{ID: "Y", Parent: "B", Depth: 1, AgeMS: 1000}, // heard t0+7s
	}}, "listed", t0.Add(8*time.Second))

	for _, c := range []struct {
		at   time.Duration
		want string
	}{
		{8 * time.Second, "A B X Y"},
		{ttl, "A B X Y"}, // A heard exactly ttl ago: still within it
		{ttl + time.Nanosecond, "B X Y"},
		{13 * time.Second, "B X Y"},
		{13*time.Second + time.Millisecond, "B Y"}, // X's word is too old though B is fresh
		{17*time.Second + time.Millisecond, "B"},
		{18 * time.Second, "B"},
		{18*time.Second + time.Nanosecond, ""},
	} {
		if got := strings.Join(ids(tb.Rows(t0.Add(c.at), big, big)), " "); got != c.want {
			t.Errorf("at t0+%v: rows %q, want %q", c.at, got, c.want)
		}
	}

	// Taking a report forgets the reporters gone silent.
	observe(t, tb, Report{ID: "C"}, "listed", t0.Add(15*time.Second))
	if _, ok := tb.reports[reporterKey{id: "A", verified: true}]; ok || len(tb.reports) != 2 {
		t.Fatalf("after a later report the table keeps %v, want B and C", tb.reports)
	}
}

// An age too large for a time.Duration must read as very old, not wrap
// around into a recent or future time.
func TestTableHugeAgeIsOld(t *testing.T) {
	for _, age := range []int64{
		int64(ttl/time.Millisecond) + 1,
		math.MaxInt64 / int64(time.Millisecond),
		math.MaxInt64/int64(time.Millisecond) + 1, // ×1e6 wraps negative: a future time
		18446744073710, // ×1e6 wraps to 448µs
		math.MaxInt64,
	} {
		t.Run(fmt.Sprint(age), func(t *testing.T) {
			tb := NewTable("self", ttl)
			observe(t, tb, Report{ID: "A", Below: []Entry{{ID: "B", Parent: "A", Depth: 1, AgeMS: age, Verified: true}}}, "any", t0)
			rows := tb.Rows(t0, big, big)
			if _, ok := rowOf(rows, "B"); ok {
				t.Fatalf("B with age %d ms is in the rows: %+v", age, rows)
			}
			s := tb.Summary(t0, Report{ID: "self", Committed: 1, Proven: 1})
			if len(s.Below) != 1 || s.Below[0].ID != "A" {
				t.Fatalf("summary %+v, want only A", s.Below)
			}
		})
	}
}

func TestTableMaxUnverified(t *testing.T) {
	tb := NewTable("self", time.Hour)
	const verified = MaxUnverified + 44
	for i := range verified { // older than every unverified one
		observe(t, tb, Report{ID: fmt.Sprintf("v%03d", i)}, "listed", t0)
	}
	for i := range MaxUnverified + 10 {
		observe(t, tb, Report{ID: fmt.Sprintf("u%03d", i)}, "", t0.Add(time.Duration(i+1)*time.Millisecond))
	}
	rows := tb.Rows(t0.Add(time.Second), big, big)
	nv, nu := 0, 0
	for _, r := range rows {
		if r.Verified {
			nv++
		} else {
			nu++
		}
	}
	if nv != verified || nu != MaxUnverified {
		t.Fatalf("%d verified and %d unverified rows, want %d and %d", nv, nu, verified, MaxUnverified)
	}
	for i := range MaxUnverified + 10 {
		_, ok := rowOf(rows, fmt.Sprintf("u%03d", i))
		if want := i >= 10; ok != want {
			t.Errorf("u%03d present %v, want %v (the oldest go first)", i, ok, want)
		}
	}
}

func TestWatermark(t *testing.T) {
	v := func(c uint64) Row { return Row{Committed: c, Verified: true} }
	u := func(c uint64) Row { return Row{Committed: c} }
	for _, c := range []struct {
		name   string
		rows   []Row
		k      int
		want   uint64
		wantOK bool
	}{
		{"none", nil, 1, 0, false},
		{"k 0", []Row{v(5)}, 0, 0, false},
		{"k 1 highest", []Row{v(5), v(9), v(7)}, 1, 9, true},
		{"k 2", []Row{v(5), v(9), v(7)}, 2, 7, true},
		{"k 3 lowest", []Row{v(5), v(9), v(7)}, 3, 5, true},
		{"fewer than k", []Row{v(5), v(9), v(7)}, 4, 0, false},
		{"ties", []Row{v(7), v(7), v(3)}, 2, 7, true},
		{"unverified ignored", []Row{u(100), v(5), u(100), v(7)}, 1, 7, true},
		{"unverified ignored k 2", []Row{u(100), v(5), u(100), v(7)}, 2, 5, true},
		{"unverified do not make up k", []Row{u(100), v(5), u(100), v(7)}, 3, 0, false},
		{"only unverified", []Row{u(1), u(2)}, 1, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Watermark(c.rows, c.k)
			if got != c.want || ok != c.wantOK {
				t.Fatalf("Watermark(k=%d) = %d, %v; want %d, %v", c.k, got, ok, c.want, c.wantOK)
			}
		})
	}
}

func TestWatermarkDropsWhenAStoreExpires(t *testing.T) {
	tb := NewTable("self", ttl)
	observe(t, tb, Report{ID: "A", Committed: 100}, "listed", t0)
	observe(t, tb, Report{ID: "B", Committed: 90}, "listed", t0.Add(5*time.Second))
	observe(t, tb, Report{ID: "C", Committed: 50}, "listed", t0.Add(5*time.Second))
	wm := func(at time.Duration, k int) (uint64, bool) {
		return Watermark(tb.Rows(t0.Add(at), big, big), k)
	}
	if w, ok := wm(6*time.Second, 2); !ok || w != 90 {
		t.Fatalf("k=2 with A, B, C = %d, %v; want 90", w, ok)
	}
	if w, ok := wm(11*time.Second, 2); !ok || w != 50 {
		t.Fatalf("k=2 after A expired = %d, %v; want 50", w, ok)
	}
	if w, ok := wm(11*time.Second, 3); ok {
		t.Fatalf("k=3 with two stores = %d, want none", w)
	}
}

func TestSummary(t *testing.T) {
	tb := NewTable("S", ttl)
	observe(t, tb, Report{ID: "B", Addr: "b:1", Committed: 30, Proven: 20, Overflow: 2, Below: []Entry{
		{ID: "D", Parent: "B", Addr: "d:1", Committed: 25, Proven: 25, Depth: 1, AgeMS: 700, Verified: true},
	}}, "listed", t0)
	observe(t, tb, Report{ID: "A", Committed: 60, Proven: 10, Overflow: 5}, "", t0.Add(time.Second))
	// A reporter gone silent: neither it nor its overflow counts.
	observe(t, tb, Report{ID: "Z", Overflow: 1000}, "listed", t0.Add(-ttl))

	now := t0.Add(2 * time.Second)
	self := Report{ID: "S", Addr: "s:1", Committed: 50, Proven: 40,
		Below: []Entry{{ID: "stale", Parent: "S", Depth: 1}}, Overflow: 99} // replaced, not added to
	got := tb.Summary(now, self)
	want := Report{ID: "S", Addr: "s:1", Committed: 50, Proven: 40, Summary: true, Overflow: 7, Below: []Entry{
		{ID: "A", Parent: "S", Committed: 50, Proven: 10, Depth: 1, AgeMS: 1000, Verified: false},
		{ID: "B", Parent: "S", Addr: "b:1", Committed: 30, Proven: 20, Depth: 1, AgeMS: 2000, Verified: true},
		{ID: "D", Parent: "B", Addr: "d:1", Committed: 25, Proven: 25, Depth: 2, AgeMS: 2700, Verified: true},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Summary:\n got %+v\nwant %+v", got, want)
	}
	if tb.Overflow(now) != 7 {
		t.Fatalf("Overflow = %d, want 7", tb.Overflow(now))
	}
	if _, err := Decode(Encode(got)); err != nil {
		t.Fatalf("Decode(summary): %v", err)
	}

	// Upstream, the summary lands one level deeper, verified as it was here.
	up := NewTable("U", ttl)
	observe(t, up, got, "listed", now)
	rows := up.Rows(now, big, big)
	if s := strings.Join(ids(rows), " "); s != "S A B D" {
		t.Fatalf("upstream rows %q", s)
	}
	if d, _ := rowOf(rows, "D"); d.Depth != 3 || !d.Verified || !d.Heard.Equal(t0.Add(-700*time.Millisecond)) {
		t.Fatalf("upstream D = %+v", d)
	}
	if a, _ := rowOf(rows, "A"); a.Verified {
		t.Fatalf("upstream A verified: %+v", a)
	}
}

func TestSummaryMaxEntries(t *testing.T) {
	tb := NewTable("S", ttl)
	const n = MaxEntries + 36
	for i := range n {
		observe(t, tb, Report{ID: fmt.Sprintf("r%03d", i), Addr: "h:1", Overflow: 1}, "any", t0)
	}
	s := tb.Summary(t0, Report{ID: "S", Committed: 1, Proven: 1})
	if len(s.Below) != MaxEntries {
		t.Fatalf("%d entries, want %d", len(s.Below), MaxEntries)
	}
	if want := n - MaxEntries + n; s.Overflow != want {
		t.Fatalf("Overflow %d, want %d left out + %d carried", s.Overflow, n-MaxEntries, n)
	}
	for i, e := range s.Below {
		if want := fmt.Sprintf("r%03d", i); e.ID != want {
			t.Fatalf("entry %d is %s, want %s", i, e.ID, want)
		}
	}
	if b := Encode(s); len(b) > MaxReportBytes {
		t.Fatalf("summary is %d bytes", len(b))
	}
	if _, err := Decode(Encode(s)); err != nil {
		t.Fatalf("Decode(summary): %v", err)
	}
}

func TestSummaryMaxBytes(t *testing.T) {
	addr := func(i int) string { return fmt.Sprintf("%05d:", i) + strings.Repeat("h", maxAddrLen-6) }
	for _, c := range []struct {
		reporters int
		all       bool // every row fits
	}{{1, true}, {5, false}, {9, false}, {40, false}} {
		reporters := c.reporters
		t.Run(fmt.Sprint(reporters), func(t *testing.T) {
			tb := NewTable(strings.Repeat("S", maxIDLen), ttl)
			carried := 0
			for i := range reporters {
				id := fmt.Sprintf("r%02d", i) + strings.Repeat("x", maxIDLen-3)
				r := Report{ID: id, Addr: addr(i), Committed: 1 << 50, Proven: 1 << 50, Overflow: i}
				for j := range 3 {
					r.Below = append(r.Below, Entry{ID: fmt.Sprintf("e%02d%d", i, j) + strings.Repeat("y", maxIDLen-4),
						Parent: id, Addr: addr(i*10 + j), Committed: 1 << 49, Proven: 1 << 49, Depth: 1, AgeMS: 1234, Verified: true})
				}
				carried += i
				observe(t, tb, r, "any", t0)
			}
			now := t0.Add(time.Second)
			self := Report{ID: strings.Repeat("S", maxIDLen), Addr: addr(99999), Committed: 1 << 60, Proven: 1 << 60}
			rows := tb.Rows(now, self.Committed, self.Proven)
			s := tb.Summary(now, self)
			b := Encode(s)
			if len(b) > MaxReportBytes {
				t.Fatalf("summary is %d bytes, at most %d", len(b), MaxReportBytes)
			}
			if _, err := Decode(b); err != nil {
				t.Fatalf("Decode(summary): %v", err)
			}
			if len(rows) != reporters*4 {
				t.Fatalf("%d rows, want %d", len(rows), reporters*4)
			}
			if c.all && len(s.Below) != len(rows) {
				t.Fatalf("%d of %d rows in %d bytes, want all", len(s.Below), len(rows), len(b))
			}
			if !c.all && (len(s.Below) >= min(len(rows), MaxEntries) || len(s.Below) == 0) {
				t.Fatalf("%d of %d rows in %d bytes: the byte bound did not bite", len(s.Below), len(rows), len(b))
			}
			if want := len(rows) - len(s.Below) + carried; s.Overflow != want {
				t.Fatalf("Overflow %d, want %d left out + %d carried", s.Overflow, len(rows)-len(s.Below), carried)
			}
			for i, e := range s.Below { // the shallowest first: a prefix of the rows
				if e.ID != rows[i].ID {
					t.Fatalf("entry %d is %s, row %d is %s", i, e.ID, i, rows[i].ID)
				}
			}
		})
	}
}

// Overflow counts are summed saturating: reports claiming huge counts
// must not wrap the sum negative, which upstream would reject.
func TestSummaryOverflowSaturates(t *testing.T) {
	tb := NewTable("S", ttl)
	observe(t, tb, Report{ID: "A", Overflow: math.MaxInt}, "", t0)
	observe(t, tb, Report{ID: "B", Overflow: math.MaxInt}, "", t0)
	observe(t, tb, Report{ID: "C", Overflow: 1}, "", t0)
	if n := tb.Overflow(t0); n != math.MaxInt {
		t.Fatalf("Overflow = %d, want %d", n, math.MaxInt)
	}
	s := tb.Summary(t0, Report{ID: "S"})
	if s.Overflow != math.MaxInt {
		t.Fatalf("summary Overflow = %d, want %d", s.Overflow, math.MaxInt)
	}
	if _, err := Decode(Encode(s)); err != nil {
		t.Fatalf("upstream rejects the summary: %v", err)
	}
}

// With no overflow carried, the count of stores left out appears only at
// the end: the room kept for it must hold any count.
func TestSummaryMaxBytesManyLeftOut(t *testing.T) {
	if testing.Short() {
		t.Skip("100 000 stores")
	}
	tb := NewTable("S", time.Hour)
	// Every row encodes to the same size, so the packing can be made tight.
	addr := strings.Repeat("h", 200)
	const reporters, per = 1600, 63
	for i := range reporters {
		r := Report{ID: fmt.Sprintf("r%04d", i), Addr: addr, Committed: 5, Proven: 5}
		for j := range per {
			r.Below = append(r.Below, Entry{ID: fmt.Sprintf("e%04d%02d", i, j), Parent: r.ID, Depth: 1})
		}
		observe(t, tb, r, "any", t0)
	}
	entry, err := json.Marshal(Entry{ID: "r0000", Parent: "S", Addr: addr, Committed: 5, Proven: 5, Depth: 1, Verified: true})
	if err != nil {
		t.Fatal(err)
	}
	n := len(entry) + 1
	// Pick the length of our own address that leaves no slack.
	for l := range n {
		self := Report{ID: "S", Addr: strings.Repeat("s", l), Committed: 5, Proven: 5}
		if (MaxReportBytes-16-len(Encode(self))-len(`,"below":[]`))%n != 0 {
			continue
		}
		s := tb.Summary(t0, self)
		if s.Overflow < 100000 {
			t.Fatalf("only %d left out", s.Overflow)
		}
		if b := Encode(s); len(b) > MaxReportBytes {
			t.Fatalf("summary with %d entries and overflow %d is %d bytes, at most %d", len(s.Below), s.Overflow, len(b), MaxReportBytes)
		}
		if want := reporters*(per+1) - len(s.Below); s.Overflow != want {
			t.Fatalf("Overflow %d, want %d", s.Overflow, want)
		}
		return
	}
	t.Fatal("no tight packing found")
}

// Rows deeper than MaxDepth are dropped; rows at MaxDepth are shown but
// not passed upstream, where they would be too deep.
func TestTableDepthBounds(t *testing.T) {
	tb := NewTable("S", ttl)
	observe(t, tb, Report{ID: "A", Below: []Entry{
		{ID: "deep", Parent: "x", Depth: MaxDepth - 1}, // row depth MaxDepth
		{ID: "deeper", Parent: "y", Depth: MaxDepth},   // row depth MaxDepth+1
		{ID: "shallow", Parent: "A", Depth: 1},         // row depth 2
	}}, "any", t0)
	rows := tb.Rows(t0, big, big)
	if got := strings.Join(ids(rows), " "); got != "A shallow deep" {
		t.Fatalf("rows %q, want A shallow deep", got)
	}
	s := tb.Summary(t0, Report{ID: "S"})
	if len(s.Below) != 2 || s.Below[1].ID != "shallow" || s.Overflow != 1 {
		t.Fatalf("summary %+v overflow %d, want A and shallow, 1 left out", s.Below, s.Overflow)
	}
	if _, err := Decode(Encode(s)); err != nil {
		t.Fatal(err)
	}
}
