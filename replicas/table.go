package replicas

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"storesync/health"
)

// Table is what one store knows of the stores below it, built from the
// reports of those that report to it directly. Pure: every method takes the
// time, nothing runs by itself; not thread-safe (Registry is its shell).
type Table struct {
	self string
	ttl  time.Duration
	// reports holds the last report of each direct reporter, keyed by its
	// id and whether it was verified: a client claiming a verified
	// follower's id cannot replace that follower's report.
	reports map[reporterKey]heard
}

type reporterKey struct {
	id       string
	verified bool
}

type heard struct {
	r         Report
	at        time.Time
	summaryAt time.Time // when r's summary came (the tips may be newer)
	subject   string    // who vouched: a certificate subject, "listed", "any" or ""
}

// MaxUnverified bounds the unverified reporters a table keeps (the oldest
// goes first): anyone can make up reports, and they must not grow memory.
const MaxUnverified = 256

// Row is one store below this one, as the table sees it now.
type Row struct {
	ID     string `json:"id"`
	Parent string `json:"parent"` // the store it reports to
	Addr   string `json:"addr,omitempty"`
	// Committed and Proven are its durable tips, at most this store's own
	// (Clamped: it claimed more, normal for a follower with a faster
	// upstream beside this one).
	Committed uint64    `json:"committed_tip"`
	Proven    uint64    `json:"proven_tip"`
	Clamped   bool      `json:"clamped,omitempty"`
	Depth     int       `json:"depth"` // 1: reports here directly; the shortest path
	Heard     time.Time `json:"last_heard"`
	Verified  bool      `json:"verified"`          // counts toward the watermark
	Subject   string    `json:"subject,omitempty"` // what verified the direct reporter on its path
}

// ErrCycle marks a report that names the receiving store itself: it
// follows, through others, a store below it.
var ErrCycle = errors.New("report names this store itself (a cycle)")

// NewTable returns the table of store self, which forgets stores not
// heard from within ttl.
func NewTable(self string, ttl time.Duration) *Table {
	return &Table{self: self, ttl: ttl, reports: map[reporterKey]heard{}}
}

// TTL is how long a store is kept without word of it.
func (t *Table) TTL() time.Duration { return t.ttl }

// Observe takes a report from a direct reporter, received at now. subject
// says who vouched for it ("" : nobody, it is shown but never counts).
func (t *Table) Observe(r Report, subject string, now time.Time) error {
	if r.ID == t.self {
		return fmt.Errorf("%w: from %s", ErrCycle, r.ID)
	}
	for _, e := range r.Below {
		if e.ID == t.self {
			return fmt.Errorf("%w: in the summary of %s", ErrCycle, r.ID)
		}
	}
	t.expire(now)
	k := reporterKey{id: r.ID, verified: subject != ""}
	h := heard{r: r, at: now, summaryAt: now, subject: subject}
	if prev, ok := t.reports[k]; ok && !r.carriesSummary() {
		// Tips alone: the last summary stands, with its own time.
		h.r.Below, h.r.Overflow, h.summaryAt = prev.r.Below, prev.r.Overflow, prev.summaryAt
	}
	t.reports[k] = h
	if !k.verified {
		t.boundUnverified()
	}
	return nil
}

func (t *Table) expire(now time.Time) {
	for k, h := range t.reports {
		if now.Sub(h.at) > t.ttl {
			delete(t.reports, k)
		}
	}
}

func (t *Table) boundUnverified() {
	var keys []reporterKey
	for k := range t.reports {
		if !k.verified {
			keys = append(keys, k)
		}
	}
	if len(keys) <= MaxUnverified {
		return
	}
	slices.SortFunc(keys, func(a, b reporterKey) int { return t.reports[a].at.Compare(t.reports[b].at) })
	for _, k := range keys[:len(keys)-MaxUnverified] {
		delete(t.reports, k)
	}
}

// Rows returns every store heard of within the ttl, by depth then id, with
// tips clamped to this store's own. A store heard of on several paths is
// one row: from a verified path if it has one, with the latest word of it
// on those paths, at the shortest depth among them (and that path's
// parent).
func (t *Table) Rows(now time.Time, committed, proven uint64) []Row {
	best := map[string]Row{}
	offer := func(c Row) {
		if now.Sub(c.Heard) > t.ttl {
			return
		}
		b, ok := best[c.ID]
		switch {
		case !ok || c.Verified && !b.Verified:
			best[c.ID] = c
		case c.Verified == b.Verified:
			// Tips and address from the latest word, the position in the
			// tree (depth and parent together) from the shortest path;
			// ties go to the smaller parent id, so the row does not
			// depend on the order the reports are walked in.
			pos := b
			if c.Depth < b.Depth || c.Depth == b.Depth && c.Parent < b.Parent {
				pos = c
			}
			if c.Heard.After(b.Heard) || c.Heard.Equal(b.Heard) && c.Parent < b.Parent {
				b = c
			}
			b.Depth, b.Parent = pos.Depth, pos.Parent
			best[c.ID] = b
		}
	}
	for k, h := range t.reports {
		r := h.r
		offer(Row{ID: r.ID, Parent: t.self, Addr: r.Addr, Committed: r.Committed, Proven: r.Proven, Depth: 1,
			Heard: h.at, Verified: k.verified, Subject: h.subject})
		for _, e := range r.Below {
			offer(Row{ID: e.ID, Parent: e.Parent, Addr: e.Addr, Committed: e.Committed, Proven: e.Proven, Depth: e.Depth + 1,
				Heard: h.summaryAt.Add(-ageOf(e.AgeMS)), Verified: k.verified && e.Verified, Subject: h.subject})
		}
	}
	rows := make([]Row, 0, len(best))
	for _, r := range best {
		if r.Committed > committed || r.Proven > proven {
			r.Clamped = true
			r.Committed, r.Proven = min(r.Committed, committed), min(r.Proven, proven)
		}
		if r.Depth > MaxDepth {
			continue
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b Row) int { return cmp.Or(cmp.Compare(a.Depth, b.Depth), cmp.Compare(a.ID, b.ID)) })
	return rows
}

// ageOf is an entry's AgeMS as a duration, saturating instead of
// wrapping: an age past what a Duration holds (292 years) is very old, not
// recent or in the future. A negative one (Decode refuses it) is now.
func ageOf(ms int64) time.Duration {
	if ms > int64(math.MaxInt64/time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(max(ms, 0)) * time.Millisecond
}

// addCount adds counts of stores, saturating at math.MaxInt: reports may
// claim any count, and a sum wrapped negative would make this store's own
// report one that its upstreams refuse.
func addCount(a, b int) int {
	b = max(b, 0)
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

// Overflow is how many stores the fresh reports say they left out.
func (t *Table) Overflow(now time.Time) int {
	n := 0
	for _, h := range t.reports {
		if now.Sub(h.at) <= t.ttl {
			n = addCount(n, h.r.Overflow)
		}
	}
	return n
}

// Watermark is the highest block committed (durably) on at least k of the
// verified rows: none (ok false) with fewer than k of them.
func Watermark(rows []Row, k int) (uint64, bool) {
	var tips []uint64
	for _, r := range rows {
		if r.Verified {
			tips = append(tips, r.Committed)
		}
	}
	return health.Watermark(tips, k)
}

// Summary is the report this store sends its upstreams: itself, and the
// rows below it, shallowest first, as many as fit MaxEntries and
// MaxReportBytes; the rest, and what the reports below left out, are
// counted in Overflow.
func (t *Table) Summary(now time.Time, self Report) Report {
	rows := t.Rows(now, self.Committed, self.Proven)
	self.Summary, self.Below, self.Overflow = true, nil, 0
	// The report without entries or overflow count, the list's
	// `,"below":[]` and room for the widest count: it is known only at
	// the end, and may be 0 (left out of the encoding) until then.
	size := len(Encode(self)) + len(`,"below":[]`) + len(`,"overflow":`) + len(strconv.Itoa(math.MaxInt))
	self.Overflow = t.Overflow(now)
	for i, r := range rows {
		e := Entry{ID: r.ID, Parent: r.Parent, Addr: r.Addr, Committed: r.Committed, Proven: r.Proven, Depth: r.Depth,
			AgeMS: max(now.Sub(r.Heard).Milliseconds(), 0), Verified: r.Verified}
		b, _ := json.Marshal(e)
		n := len(b) + 1 // and its comma
		if len(self.Below) == MaxEntries || size+n > MaxReportBytes || r.Depth >= MaxDepth {
			self.Overflow = addCount(self.Overflow, len(rows)-i)
			break
		}
		self.Below = append(self.Below, e)
		size += n
	}
	return self
}
