package primary

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log a test can read while the node writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWatermarkStallLogged: a primary whose blocks no follower backs up
// says so in its log once the --min-copies watermark has stood still for
// --watermark-stall while its tip moved, and says it once.
func TestWatermarkStallLogged(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, "test", 3); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cfg := testConfig(dir)
	cfg.Log = slog.New(slog.NewTextHandler(&log, nil))
	cfg.WatermarkStall = 300 * time.Millisecond
	n, _, stop := start(t, cfg)
	const line = "replicated watermark stopped moving"
	waitFor(t, 20*time.Second, "the stall to be logged", func() bool { return strings.Contains(log.String(), line) })
	// Blocks go on; the stall is one line, not one per check.
	c, _ := n.Store().Tips()
	waitFor(t, 20*time.Second, "more blocks", func() bool { m, _ := n.Store().Tips(); return m >= c+10 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(log.String(), line); got != 1 {
		t.Fatalf("the stall was logged %d times:\n%s", got, log.String())
	}
	if !strings.Contains(log.String(), "copies=2") || !strings.Contains(log.String(), "watermark=none") {
		t.Fatalf("the stall line does not name the copies and the watermark:\n%s", log.String())
	}
}
