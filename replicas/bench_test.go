package replicas

import (
	"fmt"
	"testing"
	"time"
)

// fullReport is a report with n stores below, as long as a real one gets.
func fullReport(id string, n int) Report {
	r := Report{ID: id, Addr: "10.0.0.1:7200", Committed: 1 << 20, Proven: 1<<20 - 6}
	for i := range n {
		r.Below = append(r.Below, Entry{ID: fmt.Sprintf("%032x", i), Parent: id, Addr: fmt.Sprintf("10.0.%d.%d:7200", i/250, i%250),
			Committed: 1 << 20, Proven: 1<<20 - 6, Depth: 1 + i%3, AgeMS: int64(i), Verified: true})
	}
	return r
}

// BenchmarkDecode: what a store pays per call received, for a report with
// 1 and with MaxEntries stores below.
func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{0, MaxEntries} {
		enc := Encode(fullReport("r", n))
		b.Run(fmt.Sprintf("below=%d/%dB", n, len(enc)), func(b *testing.B) {
			for b.Loop() {
				if _, err := Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRows: building the table's rows (what /status, metrics and a
// report's summary do) from 1 and from 100 direct reporters, each with 10
// stores below.
func BenchmarkRows(b *testing.B) {
	now := time.Now()
	for _, n := range []int{1, 100} {
		t := NewTable("self", time.Minute)
		for i := range n {
			r := fullReport(fmt.Sprintf("rep%d", i), 10)
			for j := range r.Below {
				r.Below[j].ID = fmt.Sprintf("%d-%d", i, j)
				r.Below[j].Parent = r.ID
			}
			if err := t.Observe(r, "any", now); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("reporters=%d", n), func(b *testing.B) {
			for b.Loop() {
				_ = t.Rows(now, 1<<20, 1<<20)
			}
		})
	}
}
