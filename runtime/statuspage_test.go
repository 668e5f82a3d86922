package runtime

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"storesync/actors"
	"storesync/health"
	"storesync/internal/browser"
	"storesync/internal/testnet"
	"storesync/primary"
)

// pageFollower starts a follower with an HTTP listener that counts every
// reporter below it, so the tree of stores shows on the pages.
func pageFollower(t *testing.T, hc health.Config, gpath string, upstreams, peers []string) (*Follower, string) {
	t.Helper()
	dir, id := newID(t)
	f, err := New(Config{
		DataDir: dir, Genesis: gpath, Upstreams: upstreams, Peers: peers, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		ShutdownGrace: time.Second, Health: hc, HealthEvery: reportsEvery,
		Engine: actors.Config{FetchWindow: 16, PollInterval: 20 * time.Millisecond, RetryInitial: 10 * time.Millisecond,
			RetryMax: 200 * time.Millisecond, FetchTimeout: 2 * time.Second},
		Reports: Reports{Followers: []string{"any"}},
		Log:     testnet.LogOnFailure(t, "follower "+id+" of "+strings.Join(upstreams, ",")),
	})
	if err != nil {
		t.Fatal(err)
	}
	startFollower(t, f)
	return f, id
}

// pageWait loads url in the browser until its DOM satisfies cond (which
// says what is still missing, "" when nothing), and fails the test at the
// deadline with the last answer.
func pageWait(t *testing.T, b *browser.Browser, url string, within time.Duration, what string, cond func(dom string) string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		dom, err := b.DumpDOM(url, 1500*time.Millisecond)
		missing := ""
		if err != nil {
			missing = err.Error()
		} else if missing = cond(dom); missing == "" {
			return dom
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s on %s: %s\nlast DOM:\n%s", within, what, url, missing, dom)
		}
	}
}

// selfOf is the attributes of the page's own store element.
func selfOf(dom string) map[string]string {
	if e := browser.Elements(dom, "id", "self"); len(e) == 1 {
		return e[0]
	}
	return nil
}

// TestStatusPage: a primary, follower A below it and B below A (B also
// hears the primary's tip as a peer). In headless Chromium the primary's
// page shows both followers in its tree at their depths, counted, with the
// watermarks; each follower's own page says it is ready. Once B's link to
// A is cut, B's page turns to not ready with a lag past --max-lag and
// names the failing upstream.
func TestStatusPage(t *testing.T) {
	b := browser.New(t)
	// Loose enough that a healthy follower stays ready on a loaded machine;
	// B cut off falls 5 blocks behind in a second.
	hc := health.Config{MaxLag: 5, StaleAfter: time.Second, Fall: 2, Rise: 2}
	p := testnet.StartPrimary(t, 200*time.Millisecond, func(c *primary.Config) { c.Followers = []string{"any"} })
	gpath := testnet.GenesisOf(p.Node)
	fa, idA := pageFollower(t, hc, gpath, []string{p.PublicAddr()}, nil)
	link := testnet.NewCutProxy(t, fa.Addr())
	fb, idB := pageFollower(t, hc, gpath, []string{link.Addr()}, []string{p.PublicAddr()})
	idP := p.Replicas().ID()
	explain := func() string {
		var sb strings.Builder
		for name, s := range map[string]func() string{
			"primary": func() string { return fmt.Sprintf("%+v", p.Status()) },
			"A":       func() string { return fmt.Sprintf("%+v", fa.Status()) },
			"B":       func() string { return fmt.Sprintf("%+v", fb.Status()) },
		} {
			fmt.Fprintf(&sb, "%s: %s\n", name, s())
		}
		return sb.String()
	}
	testnet.WaitForExplained(t, 30*time.Second, "both followers ready and in the primary's table", func() bool {
		s := p.Replicas().Status()
		ra, okA := rowOf(s, idA)
		rb, okB := rowOf(s, idB)
		return fa.Health().Ready && fb.Health().Ready && okA && okB && ra.Verified && rb.Verified && rb.Depth == 2
	}, explain)

	primaryURL := "http://" + p.HTTPAddr() + "/"
	pageWait(t, b, primaryURL, 20*time.Second, "the primary's page to show the tree", func(dom string) string {
		if s := selfOf(dom); s["data-role"] != "primary" || s["data-store-id"] != idP || s["data-ready"] != "true" {
			return fmt.Sprintf("self %v", s)
		}
		for _, w := range []struct {
			id, depth, parent string
		}{{idA, "1", idP}, {idB, "2", idA}} {
			rows := browser.Elements(dom, "data-store-id", w.id)
			if len(rows) != 1 || rows[0]["data-depth"] != w.depth || rows[0]["data-parent"] != w.parent || rows[0]["data-verified"] != "true" {
				return fmt.Sprintf("row of %s: %v, want depth %s below %s, counted", w.id, rows, w.depth, w.parent)
			}
		}
		for _, k := range []string{"1", "2"} {
			if wm := browser.Elements(dom, "data-k", k); len(wm) != 1 || wm[0]["data-value"] == "" {
				return fmt.Sprintf("watermark for %s copies: %v", k, wm)
			}
		}
		return ""
	})

	for _, f := range []struct {
		name, id string
		f        *Follower
	}{{"A", idA, fa}, {"B", idB, fb}} {
		pageWait(t, b, "http://"+f.f.HTTPAddr()+"/", 20*time.Second, "follower "+f.name+"'s page to say ready", func(dom string) string {
			s := selfOf(dom)
			lag, err := strconv.Atoi(s["data-lag"])
			if s["data-role"] != "follower" || s["data-store-id"] != f.id || s["data-ready"] != "true" || err != nil || lag > int(hc.MaxLag) {
				return fmt.Sprintf("self %v", s)
			}
			if f.f == fa && len(browser.Elements(dom, "data-store-id", idB)) != 1 {
				return "B missing from A's tree"
			}
			return ""
		})
	}

	dir := browser.ScreenshotDir(t)
	shot := filepath.Join(dir, "statuspage-primary.png")
	if err := b.Screenshot(primaryURL, 1500*time.Millisecond, shot, 1200, 900); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the primary's page: %s", shot)

	link.SetCut(true)
	bURL := "http://" + fb.HTTPAddr() + "/"
	pageWait(t, b, bURL, 30*time.Second, "B's page to say not ready, lagging", func(dom string) string {
		s := selfOf(dom)
		lag, err := strconv.Atoi(s["data-lag"])
		if s["data-ready"] != "false" || s["data-lag-known"] != "true" || err != nil || lag <= int(hc.MaxLag) {
			return fmt.Sprintf("self %v", s)
		}
		if up := browser.Elements(dom, "data-upstream", link.Addr()); len(up) != 1 || up[0]["data-ok"] != "false" {
			return fmt.Sprintf("upstream row of the cut link: %v", up)
		}
		if !strings.Contains(browser.Text(dom, "reason"), "lag") {
			return fmt.Sprintf("reason %q", browser.Text(dom, "reason"))
		}
		// The lag chart draws the bound the lag crossed.
		if c := browser.Elements(dom, "id", "chart-lag"); len(c) != 1 || c[0]["data-limit"] != strconv.FormatUint(hc.MaxLag, 10) {
			return fmt.Sprintf("lag chart %v, want its max-lag line at %d", c, hc.MaxLag)
		}
		return ""
	})
	shot = filepath.Join(dir, "statuspage-follower-lagging.png")
	if err := b.Screenshot(bURL, 1500*time.Millisecond, shot, 1200, 900); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of follower B's page, lagging: %s", shot)
}
