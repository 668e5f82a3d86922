// Package browser drives Debian's headless Chromium for tests of the pages
// the stores serve: the DOM after the page's scripts ran, and screenshots.
// It runs the chromium binary itself, one fresh process (and profile) a
// call, so it needs no Go dependency and no DevTools session. Test code
// only.
package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"storesync/internal/testnet"
)

// callTimeout bounds one Chromium run: a hung browser fails the test in
// seconds rather than at the test binary's timeout.
const callTimeout = 30 * time.Second

// Path returns the chromium binary, or fails the test saying how to get it.
func Path(t testing.TB) string {
	t.Helper()
	return testnet.Tool(t, "chromium", "chromium")
}

// ScreenshotDir is where a test's screenshots go: kept in
// $STORESYNC_SCREENSHOT_DIR when set, else in the test's temporary
// directory.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("STORESYNC_SCREENSHOT_DIR")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Browser runs Chromium for one test.
type Browser struct {
	t   testing.TB
	bin string
}

// New finds Chromium (failing the test without it).
func New(t testing.TB) *Browser {
	t.Helper()
	return &Browser{t: t, bin: Path(t)}
}

// DumpDOM loads url, lets its scripts run for budget of virtual time (timers
// fire as fast as the page is idle; time stands still while a request is in
// flight), and returns the serialised DOM.
func (b *Browser) DumpDOM(url string, budget time.Duration) (string, error) {
	out, err := b.run(budget, "--dump-dom", url)
	return string(out), err
}

// Screenshot loads url like DumpDOM and saves a PNG of a width x height
// window to path.
func (b *Browser) Screenshot(url string, budget time.Duration, path string, width, height int) error {
	if _, err := b.run(budget, "--screenshot="+path, fmt.Sprintf("--window-size=%d,%d", width, height),
		"--hide-scrollbars", url); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return fmt.Errorf("screenshot %s: chromium wrote no image (%v)", path, err)
	}
	return nil
}

func (b *Browser) run(budget time.Duration, args ...string) ([]byte, error) {
	profile := b.t.TempDir() // a fresh profile: no cache, no state between calls
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--user-data-dir=" + profile,
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
	}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, all...)
	// Chromium is a tree of processes: on a timeout, end the whole group
	// this call started, not just its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("chromium did not finish within %s", callTimeout))
	}
	if err != nil {
		return nil, fmt.Errorf("chromium %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.String(), 2000))
	}
	return stdout.Bytes(), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

var (
	// A start tag with its attributes; a quoted value may hold '>', which
	// Chromium does not escape in attributes.
	startTag = regexp.MustCompile(`<[a-zA-Z][a-zA-Z0-9]*(?:\s+[^\s"'>/=]+(?:="[^"]*")?)*\s*/?>`)
	attr     = regexp.MustCompile(`([a-zA-Z_:][-a-zA-Z0-9_:.]*)="([^"]*)"`)
)

// Elements returns the attributes of every element of dom whose attribute
// name has the value want, in document order. Chromium serialises every
// attribute as name="value" with quotes and & escaped, which is all this
// reads.
func Elements(dom, name, want string) []map[string]string {
	var out []map[string]string
	for _, tag := range startTag.FindAllString(dom, -1) {
		attrs := map[string]string{}
		for _, m := range attr.FindAllStringSubmatch(tag, -1) {
			attrs[m[1]] = unescape(m[2])
		}
		if v, ok := attrs[name]; ok && v == want {
			out = append(out, attrs)
		}
	}
	return out
}

// Text returns the text inside the first element with id, tags stripped
// ("" if there is none). Enough for the flat elements the tests read.
func Text(dom, id string) string {
	i := strings.Index(dom, ` id="`+id+`"`)
	if i < 0 {
		return ""
	}
	rest := dom[i:]
	gt := strings.IndexByte(rest, '>')
	if gt < 0 {
		return ""
	}
	rest = rest[gt+1:]
	// Up to the first closing tag at this element's nesting: the elements
	// read so are leaves or hold only inline spans.
	depth, j := 0, 0
	for j < len(rest) {
		if strings.HasPrefix(rest[j:], "</") {
			if depth == 0 {
				break
			}
			depth--
		} else if rest[j] == '<' {
			depth++
		}
		j++
	}
	return unescape(tagRE.ReplaceAllString(rest[:j], ""))
}

var tagRE = regexp.MustCompile(`<[^>]*>`)

func unescape(s string) string {
	return strings.NewReplacer("&quot;", `"`, "&lt;", "<", "&gt;", ">", "&nbsp;", "\u00a0", "&amp;", "&").Replace(s)
}
