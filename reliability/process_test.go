//go:build linux

package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"storesync/api"
	"storesync/internal/testnet"
)

// The fault tests run the follower as the operator does: the cmd/follower
// binary in its own process, so a SIGKILL ends it with whatever it had in
// flight (file writes, a SQLite transaction, gRPC calls) and nothing of it
// survives in the test's memory. Linux only: children are tied to the test
// process with Pdeathsig.

// buildFollower compiles cmd/follower into the test's temporary directory,
// with the race detector when the test binary has it, so the engine is
// checked for races in the child too.
func buildFollower(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "follower")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "storesync/cmd/follower")
	// go test puts its own toolchain first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("build follower: no go command on PATH: %v", err)
	}
	start := time.Now()
	if out, err := exec.Command(gobin, args...).CombinedOutput(); err != nil {
		t.Fatalf("build follower: %v\n%s", err, out)
	}
	t.Logf("built %s (race detector %v) in %s", bin, raceEnabled(), time.Since(start).Round(time.Millisecond))
	return bin
}

func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// proc is one run of the follower binary.
type proc struct {
	cmd      *exec.Cmd
	log      string // its stderr
	httpAddr string
	started  time.Time
	done     chan struct{} // closed once it has exited and been reaped
	err      error         // its exit status; read after done
	client   *http.Client
	kill     sync.Once
}

// startProc runs `follower run` with args on a fresh pair of loopback
// listeners, its output in logPath. It is killed when the test ends, and
// also if the test process dies first (Pdeathsig), so no child outlives it.
func startProc(t testing.TB, bin, logPath string, args ...string) *proc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child holds its own descriptor
	// Another process may take a free address before the follower binds
	// it; proc.bindFailed tells.
	p := &proc{log: logPath, httpAddr: testnet.FreeAddr(t), done: make(chan struct{})}
	args = append([]string{"run", "--listen", testnet.FreeAddr(t), "--http-listen", p.httpAddr}, args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start follower: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	// One kept-alive connection per run: a fresh one per poll would leave
	// thousands of loopback ports in TIME_WAIT over a long crash loop.
	p.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(func() {
		p.sigkill()
		<-p.done
		p.client.CloseIdleConnections()
	})
	return p
}

// childEnv is the test's environment without the follower's own variables
// or tracing settings, so only the flags given configure the child.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FOLLOWER_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// sigkill kills the process (once; harmless after it exited).
func (p *proc) sigkill() {
	p.kill.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGKILL) })
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// status asks the follower's HTTP /status.
func (p *proc) status(ctx context.Context) (api.NodeStatus, error) {
	var s api.NodeStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr+"/status", nil)
	if err != nil {
		return s, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("status of follower at %s: %s", p.httpAddr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("status of follower at %s: %w", p.httpAddr, err)
	}
	return s, nil
}

// output is the process's log so far.
func (p *proc) output() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// tail is the end of the log, for failure messages.
func (p *proc) tail() string {
	out := p.output()
	if len(out) > 6000 {
		out = "...\n" + out[len(out)-6000:]
	}
	return out
}

// bindFailed reports whether the process ended because one of its
// addresses was taken in the meantime (not the follower's fault).
func (p *proc) bindFailed() bool {
	return strings.Contains(p.output(), "address already in use")
}

// killedBySignal reports whether the exit was our SIGKILL.
func (p *proc) killedBySignal() bool {
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// raceReport is the race detector's report in the log, if any.
func (p *proc) raceReport() string {
	out := p.output()
	if i := strings.Index(out, "WARNING: DATA RACE"); i >= 0 {
		return out[i:min(len(out), i+8000)]
	}
	return ""
}
