package replicas

import (
	"encoding/json"
	"errors"
	"fmt"
)

// MetadataKey is the gRPC request metadata key that carries a Report. It
// ends in -bin, so gRPC carries the value as bytes (base64 on the wire).
const MetadataKey = "storesync-report-bin"

// Bounds of a report, so that it fits the header limits of gRPC servers and
// of the proxies in front of them (16 KiB is common) with room to spare.
const (
	MaxEntries     = 64
	MaxReportBytes = 8 << 10
	// MaxDepth is the deepest store a summary may name: a chain of
	// followers longer than this is a loop or a mistake.
	MaxDepth   = 16
	maxIDLen   = 64
	maxAddrLen = 255
)

// Report is what a store tells each of its upstreams on every call.
type Report struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"` // where it serves its read API
	Committed uint64 `json:"c"`    // durable committed tip
	Proven    uint64 `json:"p"`    // durable proven tip
	// Summary says the report carries the summary: Below, the stores that
	// report to this one, directly or not, shallowest first, and Overflow,
	// those left out to keep the report within its bounds (here or further
	// down). A report without it (most calls: the summary goes at most
	// every SummaryEvery on a connection) leaves the last one standing.
	Summary  bool    `json:"s,omitempty"`
	Below    []Entry `json:"below,omitempty"`
	Overflow int     `json:"overflow,omitempty"`
}

// Entry is one store of a report's summary.
type Entry struct {
	ID        string `json:"id"`
	Parent    string `json:"up"` // the store it reported to
	Addr      string `json:"addr"`
	Committed uint64 `json:"c"`
	Proven    uint64 `json:"p"`
	// Depth below the reporter: 1 reports to it directly.
	Depth int `json:"d"`
	// AgeMS is how long before the report the reporter last had word of it.
	AgeMS    int64 `json:"age"`
	Verified bool  `json:"v,omitempty"` // the reporter counts it (see Trust)
}

// carriesSummary: the flag, or stores below or left out (which only a
// summary names).
func (r Report) carriesSummary() bool { return r.Summary || len(r.Below) > 0 || r.Overflow != 0 }

// ErrBadReport marks a report that does not decode or breaks a bound.
var ErrBadReport = errors.New("bad follower report")

// Encode returns the report's metadata value.
func Encode(r Report) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("replicas: encode report: %v", err)) // plain fields only
	}
	return b
}

// Decode parses and checks a metadata value: every rejection names what is
// wrong.
func Decode(b []byte) (Report, error) {
	if len(b) > MaxReportBytes {
		return Report{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadReport, len(b), MaxReportBytes)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrBadReport, err)
	}
	if err := checkID("id", r.ID); err != nil {
		return Report{}, err
	}
	if err := checkAddr("addr", r.Addr); err != nil {
		return Report{}, err
	}
	if len(r.Below) > MaxEntries {
		return Report{}, fmt.Errorf("%w: %d stores below, at most %d", ErrBadReport, len(r.Below), MaxEntries)
	}
	if r.Overflow < 0 {
		return Report{}, fmt.Errorf("%w: overflow %d", ErrBadReport, r.Overflow)
	}
	for i, e := range r.Below {
		what := fmt.Sprintf("below[%d].", i)
		if err := checkID(what+"id", e.ID); err != nil {
			return Report{}, err
		}
		if err := checkID(what+"up", e.Parent); err != nil {
			return Report{}, err
		}
		if err := checkAddr(what+"addr", e.Addr); err != nil {
			return Report{}, err
		}
		if e.Depth < 1 || e.Depth > MaxDepth {
			return Report{}, fmt.Errorf("%w: %sd %d, want 1 to %d", ErrBadReport, what, e.Depth, MaxDepth)
		}
		if e.AgeMS < 0 {
			return Report{}, fmt.Errorf("%w: %sage %d", ErrBadReport, what, e.AgeMS)
		}
	}
	return r, nil
}

// checkID accepts 1 to 64 letters, digits, '-' and '_'.
func checkID(what, id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: %s has %d characters, want 1 to %d", ErrBadReport, what, len(id), maxIDLen)
	}
	for _, c := range []byte(id) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %s %q: only letters, digits, '-' and '_'", ErrBadReport, what, id)
		}
	}
	return nil
}

// checkAddr accepts up to 255 printable ASCII characters without spaces
// (empty: the store does not say where it serves).
func checkAddr(what, addr string) error {
	if len(addr) > maxAddrLen {
		return fmt.Errorf("%w: %s has %d characters, at most %d", ErrBadReport, what, len(addr), maxAddrLen)
	}
	for _, c := range []byte(addr) {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("%w: %s %q: printable ASCII without spaces only", ErrBadReport, what, addr)
		}
	}
	return nil
}
