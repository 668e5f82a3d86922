package statuspage_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"storesync/api"
	"storesync/internal/browser"
	"storesync/replicas"
	"storesync/statuspage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore is a Source whose status the test sets, served at /status the
// way the stores serve it, failing once told to.
type fakeStore struct {
	mu        sync.Mutex
	st        api.NodeStatus
	okLeft    atomic.Int64 // /status answers this many requests, then 503s
	statusHit atomic.Int64
}

func (f *fakeStore) Status() api.NodeStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.st
	s.Updated = time.Now()
	return s
}

func (f *fakeStore) set(st api.NodeStatus) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

// serve mounts the page beside /status on a loopback server.
func serve(t *testing.T, f *fakeStore, p *statuspage.Page) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		f.statusHit.Add(1)
		if f.okLeft.Add(-1) < 0 {
			http.Error(w, "store is shutting down", http.StatusServiceUnavailable)
			return
		}
		api.WriteJSON(w, f.Status())
	})
	p.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestRoutes: the page is at / only, self-contained, and its policy lets
// exactly its own script and style run; the history filters by time and
// refuses a malformed one.
func TestRoutes(t *testing.T) {
	f := &fakeStore{}
	f.set(api.NodeStatus{Role: "primary", Committed: 5, Proven: 4, LagKnown: true})
	p := statuspage.New(f, statuspage.Config{Keep: 3})
	url := serve(t, f, p)

	resp, body := get(t, url+"/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, ext := range []string{`src="http`, `href="http`, `src="//`, `href="//`, "@import", "url(http"} {
		if strings.Contains(body, ext) {
			t.Fatalf("the page refers to an outside asset (%q)", ext)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, tag := range []string{"script", "style"} {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no inline %s", tag)
		}
		sum := sha256.Sum256([]byte(m[1]))
		want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(csp, want) {
			t.Fatalf("CSP %q does not allow the page's own %s (%s)", csp, tag, want)
		}
	}
	if !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q: want default-src 'none'", csp)
	}
	for _, path := range []string{"/index.html", "/nothing", "/status/"} {
		if resp, _ := get(t, url+path); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404 (the page is at / only)", path, resp.StatusCode)
		}
	}

	base := time.UnixMilli(1_000_000)
	for i := range 5 {
		f.set(api.NodeStatus{Committed: uint64(10 + i), Lag: uint64(i), LagKnown: i%2 == 0})
		p.Sample(base.Add(time.Duration(i) * time.Second))
	}
	var h statuspage.HistoryJSON
	_, body = get(t, url+"/status/history")
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if h.Keep != 3 || h.EveryMS != 1000 || len(h.Samples) != 3 || h.Samples[0].Committed != 12 || h.Samples[2].Committed != 14 ||
		h.Samples[2].Lag != 4 || !h.Samples[2].LagKnown || h.Samples[1].LagKnown {
		t.Fatalf("history: %+v, want the last 3 samples, oldest first", h)
	}
	_, body = get(t, url+"/status/history?since=1003000")
	if err := json.Unmarshal([]byte(body), &h); err != nil || len(h.Samples) != 1 || h.Samples[0].At != 1_004_000 {
		t.Fatalf("history since 1003000: %+v %v, want the one sample after", h, err)
	}
	if resp, _ := get(t, url+"/status/history?since=yesterday"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("since=yesterday: %d, want 400", resp.StatusCode)
	}
	// A wall clock stepped back does not put a sample before the last.
	p.Sample(base)
	_, body = get(t, url+"/status/history")
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Samples[2].At != 1_004_001 {
		t.Fatalf("after the clock stepped back: %+v %v, want the sample kept in order at 1004001", h.Samples, err)
	}
}

// TestRunStops: the sampler samples at once and on every tick, and ends
// when its context does (goleak checks that nothing is left).
func TestRunStops(t *testing.T) {
	f := &fakeStore{}
	p := statuspage.New(f, statuspage.Config{Every: time.Millisecond, Keep: 4})
	url := serve(t, f, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var h statuspage.HistoryJSON
		_, body := get(t, url+"/status/history")
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatal(err)
		}
		if len(h.Samples) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sampler filled %d of 4 samples in 10 s", len(h.Samples))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// hostile is a store id a rogue client of the read API could report: the
// page must show it as text.
const hostile = `x"><img src=x onerror="document.title='pwned'">`

// TestPageInBrowser: in headless Chromium, the page shows a follower's
// state from /status (not ready, its lag, an upstream's problem, a hostile
// id as plain text), and says "unreachable" with the error, readiness
// unknown, once /status fails (from the first load, or after one good
// answer).
func TestPageInBrowser(t *testing.T) {
	b := browser.New(t)
	wm := uint64(40)
	st := api.NodeStatus{Role: "follower", Chain: "test", Committed: 50, Proven: 48, Ready: false, LagKnown: true, Lag: 7,
		ChainTip: 57, ChainTipSrc: "peer 127.0.0.1:1", Reason: "lag 7 (chain tip 57 from peer, local 50, max 2)",
		Upstreams: map[string]uint64{"127.0.0.1:2": 50}, Problems: map[string]string{"127.0.0.1:2": "no answer for 3s"},
		Status: replicas.Status{ID: "f-self", Watermarks: map[string]*uint64{"1": &wm, "2": nil},
			Followers: []replicas.Row{
				{ID: "f-below", Parent: "f-self", Addr: "127.0.0.1:3", Committed: 40, Proven: 39, Depth: 1, Heard: time.Now(), Verified: true, Subject: "listed"},
				{ID: hostile, Parent: "f-below", Committed: 30, Depth: 2, Heard: time.Now()},
			}}}

	t.Run("live", func(t *testing.T) {
		f := &fakeStore{}
		f.set(st)
		f.okLeft.Store(1 << 30)
		p := statuspage.New(f, statuspage.Config{})
		p.Sample(time.Now().Add(-2 * time.Second))
		p.Sample(time.Now().Add(-time.Second))
		url := serve(t, f, p)
		dom, err := b.DumpDOM(url+"/", 1500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		self := browser.Elements(dom, "id", "self")
		if len(self) != 1 || self[0]["data-ready"] != "false" || self[0]["data-lag"] != "7" || self[0]["data-store-id"] != "f-self" {
			t.Fatalf("self: %v\n%s", self, dom)
		}
		if c := browser.Elements(dom, "id", "conn"); len(c) != 1 || c[0]["data-state"] != "live" {
			t.Fatalf("connection: %v", c)
		}
		if up := browser.Elements(dom, "data-upstream", "127.0.0.1:2"); len(up) != 1 || up[0]["data-ok"] != "false" {
			t.Fatalf("upstream row: %v", up)
		}
		if !strings.Contains(dom, "no answer for 3s") {
			t.Fatal("the upstream's problem is not shown")
		}
		rows := browser.Elements(dom, "data-depth", "2")
		if len(rows) != 1 || rows[0]["data-store-id"] != hostile || rows[0]["data-verified"] != "false" {
			t.Fatalf("the hostile row: %v", rows)
		}
		if strings.Contains(dom, "<img") || regexp.MustCompile(`<title>[^<]*pwned`).MatchString(dom) {
			t.Fatalf("a reported id became markup:\n%s", dom)
		}
		if w := browser.Elements(dom, "data-k", "1"); len(w) != 1 || w[0]["data-value"] != "40" {
			t.Fatalf("watermark 1: %v", w)
		}
		if w := browser.Elements(dom, "data-k", "2"); len(w) != 1 || w[0]["data-value"] != "" {
			t.Fatalf("watermark 2: %v", w)
		}
		if c := browser.Elements(dom, "id", "chart-lag"); len(c) != 1 || atoi(c[0]["data-points"]) < 2 {
			t.Fatalf("lag chart: %v, want the samples taken before the page loaded", c)
		}
	})

	for _, tc := range []struct {
		name string
		ok   int64
	}{{"from the first load", 0}, {"after a good answer", 1}} {
		t.Run("unreachable "+tc.name, func(t *testing.T) {
			f := &fakeStore{}
			f.set(st)
			f.okLeft.Store(tc.ok)
			url := serve(t, f, statuspage.New(f, statuspage.Config{}))
			dom, err := b.DumpDOM(url+"/", 2500*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if f.statusHit.Load() <= tc.ok {
				t.Fatalf("the page asked for /status %d times, want more than %d", f.statusHit.Load(), tc.ok)
			}
			c := browser.Elements(dom, "id", "conn")
			if len(c) != 1 || c[0]["data-state"] != "unreachable" || !strings.Contains(c[0]["data-error"], "HTTP 503") ||
				!strings.Contains(browser.Text(dom, "conn"), "Unreachable") {
				t.Fatalf("connection: %v %q, want unreachable naming the error", c, browser.Text(dom, "conn"))
			}
			if self := browser.Elements(dom, "id", "self"); len(self) != 1 || self[0]["data-ready"] != "unknown" {
				t.Fatalf("self: %v, want readiness unknown, not the last answer's", self)
			}
			if tc.ok > 0 {
				if !strings.Contains(browser.Text(dom, "conn"), "not current") {
					t.Fatalf("connection %q: want the numbers shown said to be old", browser.Text(dom, "conn"))
				}
				f.okLeft.Store(tc.ok) // the screenshot's page, too, has one good answer first
				shot := filepath.Join(browser.ScreenshotDir(t), "statuspage-unreachable.png")
				if err := b.Screenshot(url+"/", 2500*time.Millisecond, shot, 1200, 900); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot of a page that lost its store: %s", shot)
			}
		})
	}
}
