package testnet

import (
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// FreeAddr is a loopback address with a port free a moment ago: for a
// process that must be told its address before it starts. Another process
// may take the port meanwhile; the caller sees the bind fail.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Buffer is a log or an output that a test reads while something else
// writes it. thread-safe.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// CutProxy forwards TCP to a target until cut: then it drops every
// connection and refuses new ones, until restored. It stands for a broken
// link between a follower and its upstream. thread-safe.
type CutProxy struct {
	target string
	lis    net.Listener
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// NewCutProxy listens on loopback and forwards to target; the test's
// cleanup stops it.
func NewCutProxy(t testing.TB, target string) *CutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &CutProxy{target: target, lis: lis, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { lis.Close(); p.SetCut(true); p.wg.Wait() })
	return p
}

// Addr is where to connect instead of the target.
func (p *CutProxy) Addr() string { return p.lis.Addr().String() }

func (p *CutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := (&net.Dialer{Timeout: time.Second}).DialContext(context.Background(), "tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(up, c); up.Close() }()
		go func() { defer p.wg.Done(); io.Copy(c, up); c.Close() }()
	}
}

// SetCut cuts the link (closing every connection through it) or restores it.
func (p *CutProxy) SetCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// Tool is the path of a program from Debian's package pkg that a test runs
// for real (HAProxy, Prometheus, Chromium), or fails the test saying how
// to get it: those tests are part of the suite, so a missing program is a
// failure, not a skip (.ci/run installs each one).
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s not found in PATH or /usr/bin: install Debian's %s package (apt-get install -y %s); .ci/run installs it", name, pkg, pkg)
	return ""
}

// VerifyNoLeaks is the TestMain of a package whose tests start stores:
// it fails the run if they leave a goroutine behind. protoactor's
// dead-letter throttle runs for one throttle interval after a dead letter
// (a message to an actor that already stopped, as happens at shutdown); it
// ends by itself and is not ours.
func VerifyNoLeaks(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}
