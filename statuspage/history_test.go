package statuspage

import (
	"slices"
	"testing"
)

func at(ts ...int64) []Sample {
	out := make([]Sample, len(ts))
	for i, t := range ts {
		out[i] = Sample{At: t, Committed: uint64(t) * 10}
	}
	return out
}

func times(s []Sample) []int64 {
	out := make([]int64, len(s))
	for i, x := range s {
		out[i] = x.At
	}
	return out
}

// TestHistory: the ring keeps the newest n samples, oldest first, however
// often it wrapped, and Since returns the suffix after a time.
func TestHistory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		add   []int64
		since int64
		want  []int64
	}{
		{"empty", 3, nil, 0, []int64{}},
		{"not full", 3, []int64{1, 2}, 0, []int64{1, 2}},
		{"exactly full", 3, []int64{1, 2, 3}, 0, []int64{1, 2, 3}},
		{"wrapped once", 3, []int64{1, 2, 3, 4}, 0, []int64{2, 3, 4}},
		{"wrapped to the start", 3, []int64{1, 2, 3, 4, 5, 6}, 0, []int64{4, 5, 6}},
		{"wrapped many times", 3, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 0, []int64{9, 10, 11}},
		{"since, not full", 5, []int64{1, 2, 3}, 1, []int64{2, 3}},
		{"since, wrapped", 3, []int64{1, 2, 3, 4, 5}, 3, []int64{4, 5}},
		{"since the newest", 3, []int64{1, 2, 3, 4}, 4, []int64{}},
		{"since before all kept", 3, []int64{1, 2, 3, 4, 5}, 0, []int64{3, 4, 5}},
		{"size below one holds one", 0, []int64{1, 2}, 0, []int64{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory(tc.n)
			for _, s := range at(tc.add...) {
				h.Add(s)
			}
			got := h.Since(tc.since)
			if !slices.Equal(times(got), tc.want) {
				t.Fatalf("Since(%d) = %v, want %v", tc.since, times(got), tc.want)
			}
			for _, s := range got {
				if s.Committed != uint64(s.At)*10 {
					t.Fatalf("sample %d carries %d: samples mixed up", s.At, s.Committed)
				}
			}
			if all := h.Since(0); h.Len() != len(all) || h.Len() > max(tc.n, 1) {
				t.Fatalf("Len %d, %d samples, bound %d", h.Len(), len(all), max(tc.n, 1))
			}
			last, ok := h.Last()
			if ok != (len(tc.add) > 0) || ok && last.At != tc.add[len(tc.add)-1] {
				t.Fatalf("Last = %v %v, want the newest of %v", last.At, ok, tc.add)
			}
		})
	}
}

// TestHistoryCopies: what Since returns is the caller's; the ring going on
// does not change it.
func TestHistoryCopies(t *testing.T) {
	h := NewHistory(2)
	h.Add(Sample{At: 1})
	h.Add(Sample{At: 2})
	got := h.Since(0)
	h.Add(Sample{At: 3})
	h.Add(Sample{At: 4})
	if !slices.Equal(times(got), []int64{1, 2}) {
		t.Fatalf("a returned slice changed under its reader: %v", times(got))
	}
}
