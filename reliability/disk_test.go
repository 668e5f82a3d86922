package reliability

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // to read the follower's tips straight from its database
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"storesync/actors"
	"storesync/api"
	"storesync/api/storev1"
	"storesync/genesis"
	"storesync/health"
	"storesync/internal/diskfault"
	"storesync/internal/testnet"
	"storesync/runtime"
	"storesync/store"
)

// A disk fault: how the follower's data directory is laid out, how the
// fault starts and how it ends.
type diskFault struct {
	name string
	// what /readyz may say: the first refused write gives one of these
	reasons []string
	// sizes of the tmpfs on the data directory and, if not "", of a second
	// one on the block files' directory alone; "ext4": an ext4 image instead
	dataSize, blocksSize string
	inject               func(t *testing.T, d *diskRun) // nil when the disk simply fills up
	release              func(t *testing.T, d *diskRun)
	// restart: the disk is only writable again after an unmount, so the
	// follower is stopped before release and started again after it.
	restart bool
	// longOnly: run in the long form only (its code paths are the short
	// form's too), to keep the short form within its time
	longOnly bool
}

var diskFaults = []diskFault{
	{
		// The whole store on a small disk that sync fills up, whichever
		// write hits the wall first; then the disk is grown.
		name: "full disk", reasons: []string{"storage: no space left on device"}, dataSize: "3m", longOnly: true,
		release: func(t *testing.T, d *diskRun) {
			if err := syscall.Mount("tmpfs", d.dataDir, "", syscall.MS_REMOUNT, "size=256m"); err != nil {
				t.Fatalf("grow the tmpfs: %v", err)
			}
		},
	},
	{
		// Block files on a disk with room, SQLite on one another process
		// fills: every block reaches its file, then its commit is refused
		// (the case between the store's two writes); then the filler goes.
		name: "database disk full", reasons: []string{"storage: no space left on device"}, dataSize: "64m", blocksSize: "64m",
		inject: func(t *testing.T, d *diskRun) {
			d.filler = filepath.Join(d.dataDir, "filler")
			diskfault.Fill(t, d.filler)
		},
		release: func(t *testing.T, d *diskRun) {
			if err := os.Remove(d.filler); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		// The kernel turns the file system read-only after an error, as
		// ext4 with errors=remount-ro does on a failing disk: writes on the
		// store's open files fail with EROFS, for root too, and an fsync
		// already under way when the journal aborts fails with EIO; which
		// one the store meets first is down to timing. Only an unmount,
		// a file system check and a mount make it writable again, so the
		// follower is restarted, and its store's recovery must pass.
		name: "read-only file system", reasons: []string{"storage: read-only file system", "storage: input/output error"}, dataSize: "ext4", restart: true,
		inject: func(t *testing.T, d *diskRun) {
			trigger := filepath.Join("/sys/fs/ext4", filepath.Base(d.device), "trigger_fs_error")
			if err := os.WriteFile(trigger, []byte("1"), 0o200); err != nil {
				t.Fatalf("make the file system fail: %v", err)
			}
		},
		release: func(t *testing.T, d *diskRun) {
			diskExec(t, "umount", d.dataDir)
			// e2fsck exits 1 when it corrected errors: the one it was told of.
			if out, err := exec.Command("e2fsck", "-fy", d.image).CombinedOutput(); err != nil {
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
					t.Fatalf("e2fsck: %v\n%s", err, out)
				}
			}
			diskExec(t, "mount", "-o", "loop,errors=remount-ro", d.image, d.dataDir)
			d.device = diskDevice(t, d.dataDir)
		},
	},
}

// TestDiskFaults: a follower whose disk refuses writes mid-sync (full)
// stops applying without crashing, restarting or blaming its upstream;
// turns not ready naming the cause on /readyz, /status and gRPC health;
// keeps serving reads; leaves its three media agreeing on the last
// committed block (a copy of the store taken meanwhile opens at that block);
// and, once the disk takes writes again, resumes by itself on the engine's
// backoff, catches up, turns ready and holds the primary's chain. Reopening
// the store afterwards gives the same tip.
func TestDiskFaults(t *testing.T) {
	for _, fault := range diskFaults {
		t.Run(fault.name, func(t *testing.T) {
			if fault.longOnly && !full() {
				t.Skip("long form only (make test-reliability)")
			}
			start := time.Now()
			defer func() { t.Logf("%s: %s", fault.name, time.Since(start).Round(time.Millisecond)) }()
			for i := range scaled(1, 3) {
				t.Logf("round %d", i+1)
				runDiskFault(t, fault)
			}
		})
	}
}

// diskRun is one fault on one follower.
type diskRun struct {
	dataDir  string // the follower's data directory, a mount point
	storeDir string
	filler   string
	image    string // the ext4 image, its loop device
	device   string
	retries  atomic.Int64 // the Applier's retries of a block the store refused
}

func runDiskFault(t *testing.T, fault diskFault) {
	// 50 blocks a second: the follower, twice as fast even under the race
	// detector, catches up on what the fault held back within seconds.
	p := testnet.StartPrimary(t, 20*time.Millisecond, nil)
	backlog := scaled(uint64(100), 1000)
	testnet.WaitFor(t, 60*time.Second, "the primary to make a backlog", func() bool { c, _ := p.Store().Tips(); return c >= backlog })

	d := &diskRun{dataDir: t.TempDir()}
	d.storeDir = filepath.Join(d.dataDir, "store")
	if fault.dataSize == "ext4" {
		diskMountExt4(t, d)
	} else {
		diskfault.MountTmpfs(t, d.dataDir, fault.dataSize)
	}
	if fault.blocksSize != "" {
		blocks := filepath.Join(d.storeDir, "blocks")
		if err := os.MkdirAll(blocks, 0o755); err != nil {
			t.Fatal(err)
		}
		diskfault.MountTmpfs(t, blocks, fault.blocksSize)
	}
	hooks := &actors.Hooks{Receive: func(name string, msg any) {
		if name == actors.ApplierName && fmt.Sprintf("%T", msg) == "actors.retryApply" {
			d.retries.Add(1)
		}
	}}
	cfg := actors.Config{Hooks: hooks}
	cfg.Defaults() // the follower binary's backoffs: what the test measures
	f, stop := diskFollower(t, d, p, cfg)
	conn, err := grpc.NewClient(f.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	committed := func() uint64 { c, _ := f.Store().Tips(); return c }

	start := time.Now()
	if fault.inject != nil {
		testnet.WaitFor(t, 60*time.Second, "the follower to be mid-sync", func() bool { return committed() >= backlog/3 })
		start = time.Now()
		fault.inject(t, d)
	}
	testnet.WaitFor(t, 60*time.Second, "the Applier to report the storage fault", func() bool { return f.Engine().StorageFault() != "" })
	seen := time.Since(start)
	want := "storage: " + f.Engine().StorageFault()
	if !slices.Contains(fault.reasons, want) {
		t.Fatalf("storage fault %q, want one of %q", want, fault.reasons)
	}
	stuck := committed()
	if stuck >= p.Store().Snapshot().Committed() {
		t.Fatalf("the fault came at %d, with the follower caught up: not mid-sync", stuck)
	}

	// Not ready, with the cause, everywhere a balancer or an operator looks.
	testnet.WaitFor(t, 30*time.Second, "/readyz to say why", func() bool {
		code, body := diskGet(t, f.HTTPAddr(), "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, want)
	})
	var st api.NodeStatus
	_, body := diskGet(t, f.HTTPAddr(), "/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ready || !strings.Contains(st.Reason, want) {
		t.Fatalf("/status is ready=%v health %q, want not ready for %q", st.Ready, st.Reason, want)
	}
	// And in the series the shipped storage-fault alert reads.
	testnet.WaitFor(t, 30*time.Second, "/metrics to show the storage fault", func() bool {
		_, body := diskGet(t, f.HTTPAddr(), "/metrics")
		return strings.Contains(body, "\nstoresync_storage_fault 1\n") && strings.Contains(body, "\nstoresync_ready 0\n")
	})
	hc := healthpb.NewHealthClient(conn)
	testnet.WaitFor(t, 30*time.Second, "gRPC health to say NOT_SERVING", func() bool {
		r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: runtime.ServiceName})
		return err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING
	})

	// The Applier retries on its backoff while the disk stays full.
	r0, t0 := d.retries.Load(), time.Now()
	testnet.WaitFor(t, 60*time.Second, "the Applier to retry a few times", func() bool { return d.retries.Load() >= r0+3 })
	retries, over := d.retries.Load()-r0, time.Since(t0)
	// Every delay is at least RetryInitial, however busy the machine: more
	// retries than that allows would be a tight loop.
	if limit := int64(over/cfg.RetryInitial) + 2; retries > limit {
		t.Fatalf("%d retries in %s: more than one per %s, a tight loop", retries, over, cfg.RetryInitial)
	}

	// Nothing applied halfway: memory, SQLite and the block file agree.
	if c := committed(); c != stuck {
		t.Fatalf("the committed tip moved from %d to %d on a full disk", stuck, c)
	}
	diskAgree(t, d, p, stuck)
	// Reads are still served, from the committed tip.
	sc := storev1.NewStoreClient(conn)
	hr, err := sc.GetBlockHeaderByNumber(context.Background(), &storev1.BlockHeaderByNumberRequest{})
	if err != nil {
		t.Fatalf("read the latest header on a full disk: %v", err)
	}
	mb, err := sc.GetBlockByNumber(context.Background(), &storev1.BlockByNumberRequest{BlockNum: stuck, IncludeProof: true})
	if err != nil || mb.Block == nil {
		t.Fatalf("read block %d on a full disk: %v", stuck, err)
	}
	if want, _ := p.Store().Snapshot().BlockBytes(stuck); !bytes.Equal(mb.Block, want) {
		t.Fatalf("block %d served on a full disk differs from the primary's", stuck)
	}
	if len(hr.Header) == 0 {
		t.Fatal("empty latest header on a full disk")
	}
	// A copy of the store as it is now opens at the same tip: a crash now
	// would lose nothing committed and keep nothing half applied.
	diskCopyOpens(t, d, p, stuck)

	s := f.Engine().Stats()
	if s.Rejected.Load() != 0 {
		t.Fatalf("%d blocks counted as rejected: a full disk was blamed on the upstream", s.Rejected.Load())
	}
	if r := f.Engine().View().Restarts; len(r) != 0 {
		t.Fatalf("actors restarted on a full disk: %v", r)
	}
	select {
	case err := <-f.Engine().Fatal():
		t.Fatalf("the engine gave up on a full disk: %v", err)
	default:
	}

	// The disk takes writes again: the engine finds out by itself (or, when
	// that needs an unmount, a restarted follower takes over the store).
	from := stuck // the tip applying resumes from
	if fault.restart {
		stop()
		fault.release(t, d)
		f, stop = diskFollower(t, d, p, actors.Config{})
		// One block more when the refused commit had reached the disk (see
		// diskCopyOpens); the catch-up below checks it is the primary's.
		from = committed()
		if from != stuck && from != stuck+1 {
			t.Fatalf("restarted at block %d, the fault came at %d", from, stuck)
		}
	} else {
		fault.release(t, d)
	}
	released := time.Now()
	testnet.WaitFor(t, 60*time.Second, "applying to resume", func() bool { return committed() > from && f.Engine().StorageFault() == "" })
	resumed := time.Since(released)
	target := p.Store().Snapshot().Committed()
	testnet.WaitFor(t, 60*time.Second, "the follower to catch up", func() bool { return committed() >= target })
	caughtUp := time.Since(released)
	testnet.WaitFor(t, 30*time.Second, "/readyz to be ready again", func() bool {
		code, _ := diskGet(t, f.HTTPAddr(), "/readyz")
		return code == http.StatusOK
	})
	testnet.SameChain(t, p.Store(), f.Store())
	t.Logf("%s: fault at block %d seen after %s; %d retries in %s; resumed %s after the disk took writes, caught up to %d after %s",
		fault.name, stuck, seen.Round(time.Millisecond), retries, over.Round(time.Millisecond),
		resumed.Round(time.Millisecond), target, caughtUp.Round(time.Millisecond))

	// Reopened after a clean stop: the same tip, recovery passes.
	stop()
	tip := f.Store().Snapshot().Committed()
	g, err := genesis.Load(testnet.GenesisOf(p.Node))
	if err != nil {
		t.Fatal(err)
	}
	re, err := store.Open(d.storeDir, g)
	if err != nil {
		t.Fatalf("reopen after the fault: %v", err)
	}
	defer re.Close()
	if c := re.Snapshot().Committed(); c != tip {
		t.Fatalf("reopened at %d, stopped at %d", c, tip)
	}
	testnet.SameChain(t, p.Store(), re)
}

// diskFollower starts a follower of p in d, stopped by stop or when the
// test ends.
func diskFollower(t *testing.T, d *diskRun, p *testnet.Primary, cfg actors.Config) (f *runtime.Follower, stop func()) {
	t.Helper()
	f, err := runtime.New(runtime.Config{
		DataDir: d.dataDir, Genesis: testnet.GenesisOf(p.Node), Upstreams: []string{p.PublicAddr()},
		Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", ShutdownGrace: time.Second,
		// The primary makes a block every 20 ms and a caught-up follower
		// asks for the next every 200 ms (the default poll): up to 10
		// behind is caught up.
		HealthEvery: 100 * time.Millisecond, Health: health.Config{MaxLag: 16, StaleAfter: 5 * time.Second, Fall: 3, Rise: 2},
		Engine: cfg, Log: testnet.LogOnFailure(t, "follower in "+d.dataDir),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			if err := f.Stop(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	return f, stop
}

// diskMountExt4 mounts a fresh ext4 image on d.dataDir through a loop
// device, with errors=remount-ro, until the test ends. It needs root, a loop
// device and e2fsprogs; elsewhere the test is skipped.
func diskMountExt4(t *testing.T, d *diskRun) {
	t.Helper()
	// The image itself lives in memory: on this machine's disk the loop
	// device's flushes made the follower slower than the primary.
	imgDir := t.TempDir()
	diskfault.MountTmpfs(t, imgDir, "300m")
	d.image = filepath.Join(imgDir, "disk.img")
	if err := os.WriteFile(d.image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.image, 256<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", d.image).CombinedOutput(); err != nil {
		t.Skipf("a read-only file system is made with an ext4 image, and mkfs.ext4 failed: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop,errors=remount-ro", d.image, d.dataDir).CombinedOutput(); err != nil {
		t.Skipf("a read-only file system is made with an ext4 image on a loop device, and mounting it failed (root needed): %v %s", err, out)
	}
	d.device = diskDevice(t, d.dataDir)
	t.Cleanup(func() {
		// The loop device goes with the mount (mount -o loop sets autoclear).
		if out, err := exec.Command("umount", d.dataDir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", d.dataDir, err, out)
		}
	})
}

// diskDevice is the device mounted on dir, e.g. /dev/loop3.
func diskDevice(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE", dir).Output()
	if err != nil {
		t.Fatalf("findmnt %s: %v", dir, err)
	}
	return strings.TrimSpace(string(out))
}

func diskExec(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// diskAgree checks that the follower's SQLite commit point and its block
// file both stand at block n, the tip its memory has.
func diskAgree(t *testing.T, d *diskRun, p *testnet.Primary, n uint64) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.storeDir, "store.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var committed, off, length uint64
	if err := db.QueryRow(`SELECT committed FROM tips WHERE id = 1`).Scan(&committed); err != nil {
		t.Fatalf("read the tips from the follower's database: %v", err)
	}
	if committed != n {
		t.Fatalf("the database's committed tip is %d, the store's %d", committed, n)
	}
	if err := db.QueryRow(`SELECT file_offset, file_length FROM blocks WHERE number = ?`, n).Scan(&off, &length); err != nil {
		t.Fatalf("read block %d's row: %v", n, err)
	}
	var later int
	if err := db.QueryRow(`SELECT count(*) FROM blocks WHERE number > ?`, n).Scan(&later); err != nil || later != 0 {
		t.Fatalf("%d block rows past the committed tip %d (%v)", later, n, err)
	}
	seg, err := os.ReadFile(filepath.Join(d.storeDir, "blocks", fmt.Sprintf("%08d.seg", n/store.SegmentSpan)))
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(seg)) < off+length {
		t.Fatalf("block file is %d bytes, committed block %d ends at %d", len(seg), n, off+length)
	}
	want, _ := p.Store().Snapshot().BlockBytes(n)
	if !bytes.Equal(seg[off:off+length], want) {
		t.Fatalf("block %d in the follower's file differs from the primary's", n)
	}
	t.Logf("at the fault: memory, database and block file at block %d; %d uncommitted bytes past it in its file", n, uint64(len(seg))-off-length)
}

// diskCopyOpens copies the follower's store off the full disk and opens
// the copy: it must come up at block n, or at n+1 when the commit the disk
// refused had in fact reached it. A proof committed during the copy
// (it may find room a block did not) could tear it: then it is taken again.
func diskCopyOpens(t *testing.T, d *diskRun, p *testnet.Primary, n uint64) {
	t.Helper()
	g, err := genesis.Load(testnet.GenesisOf(p.Node))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		_, provenBefore := d.proven()
		dst := t.TempDir()
		diskCopyTree(t, d.storeDir, dst, d.filler)
		if _, provenAfter := d.proven(); provenAfter != provenBefore {
			continue
		}
		s, err := store.Open(dst, g)
		if err != nil {
			t.Fatalf("open a copy of the store taken on a full disk: %v", err)
		}
		defer s.Close()
		c := s.Snapshot().Committed()
		if c != n && c != n+1 {
			t.Fatalf("a copy taken at the fault opens at block %d, the follower is at %d", c, n)
		}
		if c == n+1 {
			// The refused commit reached the disk anyway (the write-ahead
			// log's commit frame was written, what followed it failed): a
			// crash now keeps one whole block more than the follower has
			// reported, which loses nothing. It must be the primary's.
			testnet.SameChain(t, p.Store(), s)
			t.Logf("the refused commit of block %d had reached the disk; a copy opens with it", c)
		}
		return
	}
	t.Fatal("no quiet moment to copy the store in five tries")
}

// proven reads the proven tip from the follower's database.
func (d *diskRun) proven() (committed, proven uint64) {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.storeDir, "store.db")+"?mode=ro")
	if err != nil {
		return 0, 0
	}
	defer db.Close()
	_ = db.QueryRow(`SELECT committed, proven FROM tips WHERE id = 1`).Scan(&committed, &proven)
	return committed, proven
}

// diskCopyTree copies the store's files (not skip): the WAL before the
// database, so no checkpoint can leave the copy's database ahead of it.
func diskCopyTree(t *testing.T, src, dst, skip string) {
	t.Helper()
	for _, name := range []string{"store.db-wal", "store.db"} {
		diskCopyFile(t, filepath.Join(src, name), filepath.Join(dst, name))
	}
	for _, sub := range []string{"blocks", "proofs"} {
		if err := os.MkdirAll(filepath.Join(dst, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(filepath.Join(src, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if path := filepath.Join(src, sub, e.Name()); path != skip && strings.HasSuffix(e.Name(), ".seg") {
				diskCopyFile(t, path, filepath.Join(dst, sub, e.Name()))
			}
		}
	}
}

func diskCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// diskGet fetches path from the follower's HTTP listener.
func diskGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
