package statuspage

// Sample is one point of a store's recent past: its tips and lag at a
// moment. Times are Unix milliseconds, as the page's script reads them.
type Sample struct {
	At        int64  `json:"t"`
	Committed uint64 `json:"committed"`
	Proven    uint64 `json:"proven"`
	Lag       uint64 `json:"lag"`
	LagKnown  bool   `json:"lag_known"` // false: Lag means nothing (no source heard from recently)
}

// History is a ring of the last samples: a fixed number of them, the
// oldest overwritten, so the memory it holds never grows with the uptime.
// Not safe for concurrent use; Page guards it.
type History struct {
	buf  []Sample
	next int  // where the next sample goes
	full bool // buf has wrapped: buf[next] is the oldest
}

// NewHistory returns an empty ring of n samples (at least one).
func NewHistory(n int) *History {
	return &History{buf: make([]Sample, max(n, 1))}
}

// Add records s, dropping the oldest sample when the ring is full.
func (h *History) Add(s Sample) {
	h.buf[h.next] = s
	h.next++
	if h.next == len(h.buf) {
		h.next, h.full = 0, true
	}
}

// Len is the number of samples held.
func (h *History) Len() int {
	if h.full {
		return len(h.buf)
	}
	return h.next
}

// Last returns the newest sample, if any.
func (h *History) Last() (Sample, bool) {
	if h.Len() == 0 {
		return Sample{}, false
	}
	return h.buf[(h.next+len(h.buf)-1)%len(h.buf)], true
}

// Since returns a copy of the samples taken after the time at (Unix ms),
// oldest first; at 0 gives them all.
func (h *History) Since(at int64) []Sample {
	out := make([]Sample, 0, h.Len())
	if h.full {
		out = append(out, h.buf[h.next:]...)
	}
	out = append(out, h.buf[:h.next]...)
	// Samples are added in time order, so those after at are a suffix.
	i := len(out)
	for i > 0 && out[i-1].At > at {
		i--
	}
	return out[i:]
}
