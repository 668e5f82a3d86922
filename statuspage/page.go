// Package statuspage serves a store's live status page: the HTML at `/` on
// its HTTP listener, and `/status/history`, the last minutes of its tips
// and lag.
//
// The page is one self-contained HTML document (its script and style
// embedded in the binary: no build step, no asset from anywhere else). It
// reads the store's own `/status` every second and draws what it finds:
// this store, the tree of stores below it, the replicated watermarks, and
// charts of lag and throughput. So that a page just opened already shows the
// recent past, the store samples itself once a second into a bounded ring
// (History) and serves it; the page then asks only for the samples newer
// than those it has.
//
// The page treats everything in the table of stores below as untrusted
// text (any client of the read API can report itself a follower): it
// builds the DOM with textContent only, and the response carries a
// Content-Security-Policy that lets no script run but its own.
package statuspage

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"storesync/api"
)

// Defaults of Config: one sample a second for ten minutes, 600 samples of
// 40 bytes (24 KB): the span an operator looks back over when asked "is it
// catching up?", at the resolution the page refreshes with.
const (
	DefaultEvery = time.Second
	DefaultKeep  = 600
)

// Source is what the page shows: a store's status, as /status serves it.
// Both primary.Node and runtime.Follower are one.
type Source interface {
	Status() api.NodeStatus
}

// Config sets the sampling of the history; zero fields take the defaults.
type Config struct {
	Every time.Duration // time between samples
	Keep  int           // samples kept
}

// Page serves the status page of one store and keeps its history.
type Page struct {
	// immutable after New
	src   Source
	every time.Duration

	mu   sync.Mutex
	hist *History // guarded by mu
}

// New returns the page of src. Its history fills only while Run runs.
func New(src Source, cfg Config) *Page {
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	return &Page{src: src, every: cfg.Every, hist: NewHistory(cfg.Keep)}
}

// Mount adds `GET /` (that path only) and `GET /status/history` to mux.
func (p *Page) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", p.serveHTML)
	mux.HandleFunc("GET /status/history", p.serveHistory)
}

// Run samples the source every Config.Every until ctx ends. Its caller
// owns it: it returns once ctx is done.
func (p *Page) Run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.Sample(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample records the source's status now. Run calls it; tests may too.
// thread-safe.
func (p *Page) Sample(now time.Time) {
	s := p.src.Status()
	smp := Sample{At: now.UnixMilli(), Committed: s.Committed, Proven: s.Proven, Lag: s.Lag, LagKnown: s.LagKnown}
	p.mu.Lock()
	defer p.mu.Unlock()
	// History.Since relies on time order; a wall clock stepped back must
	// not break it, so a sample is never older than the one before.
	if last, ok := p.hist.Last(); ok && smp.At <= last.At {
		smp.At = last.At + 1
	}
	p.hist.Add(smp)
}

// HistoryJSON is what /status/history serves.
type HistoryJSON struct {
	EveryMS int64    `json:"every_ms"`
	Keep    int      `json:"keep"`
	Samples []Sample `json:"samples"` // oldest first
}

// serveHistory serves the samples, all of them or (?since=ms) those taken
// after a time, so a page that refreshes asks only for what is new.
func (p *Page) serveHistory(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = strconv.ParseInt(v, 10, 64); err != nil {
			http.Error(w, fmt.Sprintf("since: want Unix milliseconds, got %q", v), http.StatusBadRequest)
			return
		}
	}
	p.mu.Lock()
	out := HistoryJSON{EveryMS: p.every.Milliseconds(), Keep: len(p.hist.buf), Samples: p.hist.Since(since)}
	p.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, out)
}

func (p *Page) serveHTML(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.Write(page)
}

var (
	//go:embed assets/page.html
	pageHTML string
	//go:embed assets/page.css
	pageCSS string
	//go:embed assets/page.js
	pageJS string

	// page is the document served: the HTML with its style and script
	// inlined, so the page is one request and needs nothing else.
	page = []byte(strings.NewReplacer("/*STYLE*/", pageCSS, "/*SCRIPT*/", pageJS).Replace(pageHTML))
	// csp allows exactly the inlined style and script (by hash), and
	// requests to this store only.
	csp = "default-src 'none'; script-src '" + hash(pageJS) + "'; style-src '" + hash(pageCSS) +
		"'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}
