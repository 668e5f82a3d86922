package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"storesync/api/storev1"
	"storesync/workload"
)

// MemoryResult: the follower process's peak RSS while catching up `large`
// blocks, at several configured window sizes on the same chain. The
// top-level keys are those of the largest window.
type MemoryResult struct {
	Blocks    int         `json:"blocks"`
	BlockMB   float64     `json:"block_mb"`
	WindowMB  float64     `json:"window_mb"`
	PeakRSSMB float64     `json:"peak_rss_mb"`
	Rows      []MemoryRow `json:"windows"`
}

// MemoryRow is one catch-up at one window size.
type MemoryRow struct {
	WindowMB  float64 `json:"window_mb"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// OverheadMB is peak RSS minus the window: what the follower holds
	// besides blocks in flight (state trees, SQLite cache, runtime).
	OverheadMB float64 `json:"overhead_mb"`
}

func memory(quick bool) (*MemoryResult, error) {
	n, windows := 120, []int64{4 << 20, 16 << 20, 64 << 20}
	if quick {
		n, windows = 30, []int64{4 << 20, 32 << 20}
	}
	p, _ := workload.ProfileByName("large")
	c, err := workload.BuildChain(29, p, n, 1000)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-memory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	served, err := serveChain(filepath.Join(dir, "primary"), c)
	if err != nil {
		return nil, err
	}
	defer served.stop()
	bin := filepath.Join(dir, "follower")
	if out, err := exec.Command("go", "build", "-o", bin, "storesync/cmd/follower").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build follower: %v\n%s", err, out)
	}
	res := &MemoryResult{Blocks: n, BlockMB: float64(served.bytes) / float64(n) / 1e6}
	for i, window := range windows {
		peak, err := followerPeakRSS(bin, filepath.Join(dir, fmt.Sprintf("follower-%d", i)), served, window, uint64(n))
		if err != nil {
			return nil, err
		}
		wmb := float64(window) / (1 << 20)
		res.Rows = append(res.Rows, MemoryRow{WindowMB: wmb, PeakRSSMB: peak, OverheadMB: peak - wmb})
		res.WindowMB, res.PeakRSSMB = wmb, peak
	}
	fmt.Println("\n### memory: the follower process catching up `large` blocks, at several window sizes")
	fmt.Println()
	fmt.Printf("%d blocks of %.2f MB each, %.0f MB in all, fetched with a window of:\n\n", res.Blocks, res.BlockMB, res.BlockMB*float64(res.Blocks))
	fmt.Println("| window MB | peak RSS MB | peak RSS - window MB |")
	fmt.Println("|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %.0f | %.0f | %.0f |\n", r.WindowMB, r.PeakRSSMB, r.OverheadMB)
	}
	return res, nil
}

// followerPeakRSS runs the follower binary on a fresh data directory until it
// has caught up to tip, and returns its peak RSS in MB.
func followerPeakRSS(bin, dataDir string, served *servedChain, window int64, tip uint64) (float64, error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, "run", "--data-dir", dataDir, "--genesis", served.genesisPath(),
		"--upstream", served.node.PublicAddr(), "--listen", addr, "--http-listen", "", "--log-level", "warn",
		"--fetch-window-bytes", strconv.FormatInt(window, 10))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	client, closeConn, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer closeConn()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, err := client.Status(context.Background(), &storev1.StatusRequest{})
		if err == nil && st.CommittedTip >= tip {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the follower with a %d-byte window did not catch up", window)
		}
		time.Sleep(50 * time.Millisecond) // polling another process's progress
	}
	return peakRSS(cmd.Process.Pid)
}

// peakRSS reads VmHWM (the peak resident set) of a process, in MB.
func peakRSS(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
