package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"storesync/internal/testnet"
)

// blackhole is a collector that accepts connections and never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestShutdownCollectorUnreachable: a follower whose collector refuses
// connections and a primary whose collector accepts and never answers,
// both with spans queued, exit within their --shutdown-grace (plus a
// margin a loaded machine keeps) of SIGTERM, each saying once how many
// spans it dropped. The OTLP exporter alone would retry for a minute.
func TestShutdownCollectorUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	bin := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin, "storesync/cmd/follower", "storesync/cmd/primary")
	build.Dir = filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	const grace = 2 * time.Second
	dir := t.TempDir()
	pdir, fdir := filepath.Join(dir, "primary"), filepath.Join(dir, "follower")
	if out, err := exec.Command(filepath.Join(bin, "primary"), "init", "--data-dir", pdir).CombinedOutput(); err != nil {
		t.Fatalf("primary init: %v\n%s", err, out)
	}
	start := func(name string, log *testnet.Buffer, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Stderr, cmd.Stdout = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		return cmd
	}
	upstream := testnet.FreeAddr(t)
	var plog, flog testnet.Buffer
	p := start("primary", &plog, "run", "--data-dir", pdir, "--listen", upstream, "--internal-listen", testnet.FreeAddr(t), "--http-listen", "",
		"--block-interval", "100ms", "--profile", "small", "--shutdown-grace", grace.String(), "--otlp-endpoint", blackhole(t))
	f := start("follower", &flog, "run", "--data-dir", fdir, "--genesis", filepath.Join(pdir, "genesis.json"), "--upstream", upstream,
		"--listen", testnet.FreeAddr(t), "--http-listen", "", "--shutdown-grace", grace.String(), "--otlp-endpoint", testnet.FreeAddr(t))
	// Caught up: hundreds of calls traced (the first sweep of the window
	// alone is 256), none of them exported.
	testnet.WaitForExplained(t, 60*time.Second, "the follower to be ready", func() bool {
		return strings.Contains(flog.String(), "readiness changed") && strings.Contains(flog.String(), "ready=true")
	}, func() string { return "follower:\n" + flog.String() + "\nprimary:\n" + plog.String() })
	for _, tc := range []struct {
		name string
		cmd  *exec.Cmd
		log  *testnet.Buffer
	}{{"follower (collector refusing)", f, &flog}, {"primary (collector silent)", p, &plog}} {
		begin := time.Now()
		if err := tc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- tc.cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s: %v\n%s", tc.name, err, tc.log.String())
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s still running a minute after SIGTERM\n%s", tc.name, tc.log.String())
		}
		took := time.Since(begin)
		t.Logf("%s exited %s after SIGTERM (grace %s)", tc.name, took.Round(time.Millisecond), grace)
		if took > grace+3*time.Second {
			t.Errorf("%s took %s to exit, want within its grace %s plus 3 s", tc.name, took, grace)
		}
		if n := strings.Count(tc.log.String(), "trace export: dropped"); n != 1 {
			t.Errorf("%s: %d lines on dropped spans, want 1\n%s", tc.name, n, tc.log.String())
		}
	}
}
