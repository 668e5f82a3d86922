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
// blocks, against its configured window bytes.
type MemoryResult struct {
	Blocks    int     `json:"blocks"`
	BlockMB   float64 `json:"block_mb"`
	WindowMB  float64 `json:"window_mb"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
}

func memory(quick bool) (*MemoryResult, error) {
	n, window := 120, int64(32<<20)
	if quick {
		n = 30
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
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--data-dir", filepath.Join(dir, "follower-data"), "--genesis", served.genesisPath(),
		"--upstream", served.node.PublicAddr(), "--listen", addr, "--http-listen", "", "--log-level", "warn",
		"--fetch-window-bytes", strconv.FormatInt(window, 10))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	client, closeConn, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer closeConn()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, err := client.Status(context.Background(), &storev1.StatusRequest{})
		if err == nil && st.CommittedTip >= uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the follower did not catch up")
		}
		time.Sleep(50 * time.Millisecond) // polling another process's progress
	}
	peak, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	res := &MemoryResult{Blocks: n, BlockMB: float64(served.bytes) / float64(n) / 1e6, WindowMB: float64(window) / (1 << 20), PeakRSSMB: peak}
	fmt.Println("\n### memory: the follower process catching up `large` blocks")
	fmt.Println()
	fmt.Println("| blocks | MB per block | window MB | peak RSS MB |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| %d | %.2f | %.0f | %.0f |\n", res.Blocks, res.BlockMB, res.WindowMB, res.PeakRSSMB)
	return res, nil
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
