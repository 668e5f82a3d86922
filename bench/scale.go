package main

// The scale scenario measures how the store's costs grow with the size of
// its state: apply time by stage, open time (cold, after a clean stop, after
// a SIGKILL mid-apply), RSS and page cache, read throughput over the real
// read API, and disk bytes per key, at several sizes of one synthetic
// `large` chain. Keys are nullifiers + notes + accounts.
//
// States are expensive to build (10^7 keys is about 2,200 large blocks), so
// they are kept between runs in a cache directory:
//
//	DIR/base/              the store grown furthest along the chain
//	DIR/base.tip           "tip commitment" of base, written after a clean close
//	DIR/states/blocks-N/   closed stores holding blocks 0..N exactly: what base
//	                       held each time it had to grow past a measured size
//	DIR/counts.txt         notes and nullifiers of every block of the chain
//	DIR/scratch/           the copy one measurement runs on, removed after it
//
// The chain is deterministic (every block is a function of the seed, its
// number and the state before it; timestamps are one interval apart from
// workload.GenesisTime), so counts.txt describes every store in the cache
// and a size is turned into a block count without opening any.
//
// Each size is measured in a child process (the bench binary re-executed
// with scaleChildArg), so that its RSS is the store's and nothing else's;
// the child makes the timed blocks in a grandchild (scalePrepareArg) and
// runs the SIGKILL test in another (scaleKillArg).
//
// With --scale-blocks the scenario also measures what grows with the length
// of the chain rather than with its state (the block index, the MMR, the
// segment files): stores holding N blocks of a second, `small` chain (seed
// 2), kept under DIR/small/ the same way (DIR/small/base,
// DIR/small/states/blocks-N, DIR/small/counts.txt, DIR/small/scratch).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"google.golang.org/grpc"

	"storesync/api"
	"storesync/api/storev1"
	"storesync/block"
	"storesync/genesis"
	"storesync/merkle"
	"storesync/state"
	"storesync/store"
	"storesync/workload"
)

const (
	scaleSeed    = 1
	scaleChainID = "scale-1"
	// The chain --scale-blocks measures, kept under DIR/small.
	scaleSmallSeed    = 2
	scaleSmallChainID = "scale-small-2"
	scaleSmallDir     = "small"
	// scaleMaxBlocks bounds one --scale-blocks length (scaleGrowLimit
	// bounds its growth in time): 10^5 small blocks, each proven, took 24
	// minutes to build on a shared 2-core VM (140 blocks/s falling to 60).
	scaleMaxBlocks = 1e8
	// scaleIntervalMs spaces block timestamps, as workload.BuildChain does:
	// the chain must be the same run after run for the cache to hold.
	scaleIntervalMs = 1000
	// The hidden first arguments of the child and the grandchild.
	scaleChildArg   = "scale-child"
	scaleKillArg    = "scale-kill"
	scalePrepareArg = "scale-prepare"
	// scaleDefaultSizes are measured without --scale-sizes; --quick only
	// measures the first.
	scaleDefaultSizes = "1e5,1e6,1e7"
	// scaleQuickBlocks is what --quick measures without --scale-blocks;
	// without --quick, no --scale-blocks measures no chain length.
	scaleQuickBlocks = "1e3"
	// scaleProgressEvery: growing 10^7 keys takes minutes; a line this
	// often shows it moves without flooding the terminal.
	scaleProgressEvery = 10 * time.Second
	// scaleGrowLimit bounds one growth in time. 10^7 keys take a few
	// minutes on a 2-core VM; this is only there to end a run that hangs.
	scaleGrowLimit = 3 * time.Hour
	// scaleChildLimit bounds one measurement child, scaleKillLimit the
	// grandchild (it opens the store and generates its blocks first).
	scaleChildLimit = 2 * time.Hour
	scaleKillLimit  = 30 * time.Minute
	// scaleReadFor is how long each read method is driven: long enough for
	// tens of calls of the slowest (a 1 MB block with its proof), short
	// enough that six of them keep --quick well under a minute.
	scaleReadFor = 2 * time.Second
	// scaleReadClients call concurrently, as the isolation flood does:
	// enough to keep both cores of the bench machines busy.
	scaleReadClients = floodClients
	// scaleMaxCalls bounds one client's loop in count (time bounds it first).
	scaleMaxCalls = 1 << 24
	// scaleBatch is the ids of one CheckNullifiers or GetNotesById call: a
	// wallet checking a handful of its notes.
	scaleBatch = 16
	// scaleSampleBlocks, spread over the chain, give the nullifiers, note ids
	// and tags the reads ask for; at most scaleSamplePerBlock of each from
	// each block.
	scaleSampleBlocks   = 32
	scaleSamplePerBlock = 256
	// The grandchild prepares scaleKillBlocks `large` blocks, then applies
	// them; it is killed halfway through the apply after the
	// scaleKillAfter-th (halfway through its own apply time): most of a large
	// block's apply is the SQLite transaction, so the kill usually lands in it.
	scaleKillBlocks = 4
	scaleKillAfter  = 2
	// scaleSmallKillBlocks: a `small` block applies in milliseconds, so the
	// grandchild prepares enough of them to be still applying when the kill
	// lands, however late the parent is scheduled.
	scaleSmallKillBlocks = 256
	// scaleMinNotesPerBlock bounds the blocks a size needs: every
	// transaction of a `large` block creates at least one note.
	scaleMinNotesPerBlock = 2048
)

// The reads driven against each state, in table order.
var scaleReadMethods = []string{"GetBlockByNumber+proof", "GetAccount", "CheckNullifiers", "GetBlockHeaderByNumber+MMR", "GetNotesById", "SyncNotes"}

// The reads driven against each chain length, in table order.
var scaleBlocksReadMethods = []string{"GetBlockHeaderByNumber+MMR", "GetBlockByNumber+proof"}

// scaleChain is one synthetic chain of the scenario: what the cache, the
// child and the grandchild need to rebuild its genesis and its blocks.
type scaleChain struct {
	Seed    uint64 `json:"seed"`
	ChainID string `json:"chain_id"`
	Profile string `json:"profile"`
	// KillBlocks: how many blocks the SIGKILL grandchild prepares.
	KillBlocks int `json:"kill_blocks"`
}

var (
	scaleLargeChain = scaleChain{Seed: scaleSeed, ChainID: scaleChainID, Profile: "large", KillBlocks: scaleKillBlocks}
	scaleSmallChain = scaleChain{Seed: scaleSmallSeed, ChainID: scaleSmallChainID, Profile: "small", KillBlocks: scaleSmallKillBlocks}
)

func (ch scaleChain) genesis() (*genesis.File, workload.Keys, error) {
	keys := workload.DevKeys(ch.Seed)
	g, err := workload.Genesis(ch.ChainID, ch.Seed, keys, workload.GenesisTime)
	return g, keys, err
}

// ScaleResult: the store's costs at several sizes of one chain's state.
type ScaleResult struct {
	Cache          string     `json:"cache"`
	LargeBlocks    int        `json:"large_blocks"` // applied on top of each state, then
	StandardBlocks int        `json:"standard_blocks"`
	Rows           []ScaleRow `json:"rows"`
	// BlockRows: the `small` chain at several lengths (--scale-blocks).
	BlockRows []ScaleBlocksRow `json:"block_rows,omitempty"`
}

// ScaleBlocksRow is one length of the `small` chain.
type ScaleBlocksRow struct {
	Blocks        uint64  `json:"blocks"`
	Keys          uint64  `json:"keys"`
	DiskBytes     int64   `json:"disk_bytes"` // du of the store directory
	BytesPerBlock float64 `json:"disk_bytes_per_block"`
	ScaleMeasure
}

// ScaleRow is one state size.
type ScaleRow struct {
	Size        float64 `json:"size"` // as asked: the state is the first block reaching it
	Blocks      uint64  `json:"blocks"`
	Nullifiers  uint64  `json:"nullifiers"`
	Notes       uint64  `json:"notes"`
	Accounts    uint64  `json:"accounts"`
	Keys        uint64  `json:"keys"`
	KeysAfter   uint64  `json:"keys_after_blocks"` // once the measured blocks are applied
	DiskBytes   int64   `json:"disk_bytes"`        // du of the store directory
	BytesPerKey float64 `json:"disk_bytes_per_key"`
	ScaleMeasure
}

// ScaleMeasure is what the child measures on a copy of one state.
type ScaleMeasure struct {
	OpenS        float64 `json:"open_s"`         // the first open, the files' page cache dropped
	ReopenCleanS float64 `json:"reopen_clean_s"` // after Close
	ReopenKillS  float64 `json:"reopen_kill_s"`  // after a SIGKILL mid-apply
	// KilledIntoMs is how long after the last block it reported the
	// grandchild was killed; KillTip and KillRecovered are the tip it had
	// reported then and the tip Open found.
	KilledIntoMs  float64 `json:"killed_into_ms"`
	KillTip       uint64  `json:"kill_reported_tip"`
	KillRecovered uint64  `json:"kill_recovered_tip"`
	KillReplayed  int     `json:"kill_replayed"` // blocks that reopen replayed into the state database
	RSSOpenMB     float64 `json:"rss_open_mb"`   // VmRSS after runtime.GC
	HeapOpenMB    float64 `json:"heap_open_mb"`
	RSSBlocksMB   float64 `json:"rss_blocks_mb"`
	HeapBlocksMB  float64 `json:"heap_blocks_mb"`
	CacheBeforeMB float64 `json:"page_cache_before_open_mb"` // of the store's files
	CacheOpenMB   float64 `json:"page_cache_open_mb"`
	CacheBlocksMB float64 `json:"page_cache_blocks_mb"`
	// SettleS: how long the state database's compactions took to settle
	// before the timed work; DebtLeftMB what they had left when the wait
	// ended.
	SettleS    float64 `json:"settle_s"`
	DebtLeftMB float64 `json:"debt_left_mb"`
	// FlushedMB and CompactedMB: what the state database wrote to its
	// files during the timed blocks, by memtable flushes and by
	// compactions (which run on the cores the apply shares).
	FlushedMB   float64      `json:"state_flushed_mb"`
	CompactedMB float64      `json:"state_compacted_mb"`
	Large       ScaleApply   `json:"large,omitzero"` // none for a chain length
	Standard    ScaleApply   `json:"standard,omitzero"`
	AddedKeys   uint64       `json:"added_keys"`
	Reads       []ScaleReads `json:"reads"`
}

// ScaleApply is the mean cost of applying blocks of one profile, by the
// stages of store.Report; TotalMs is ApplyBlock's own wall time, RestMs what
// of it the stages do not cover (waiting for the writer's lock, encoding).
type ScaleApply struct {
	Blocks     int     `json:"blocks"`
	ValidateMs float64 `json:"validate_ms"`
	TreesMs    float64 `json:"trees_ms"`
	FileMs     float64 `json:"block_file_ms"`
	SQLiteMs   float64 `json:"sqlite_ms"`
	StateMs    float64 `json:"state_ms"`
	RestMs     float64 `json:"rest_ms"`
	TotalMs    float64 `json:"total_ms"`
	P99Ms      float64 `json:"total_p99_ms"`
	// Nodes and Pruned: tree nodes written to and deleted from the state
	// database, mean per timed block.
	Nodes  float64 `json:"nodes"`
	Pruned float64 `json:"pruned"`
}

// ScaleReads is one read method's throughput.
type ScaleReads struct {
	Method string  `json:"method"`
	PerS   float64 `json:"per_s"`
	Calls  int64   `json:"calls"`
	Items  int64   `json:"items"` // what the answers held (see scaleRead)
	Errors int64   `json:"errors"`
}

// scaleBlocksFlag is --scale-blocks (main binds it): the chain lengths of
// the `small` chain measured, "1e3,1e5"; empty: none (--quick: scaleQuickBlocks).
var scaleBlocksFlag string

func scale(quick bool, sizesFlag, cacheFlag, plotsDir string) (*ScaleResult, error) {
	return scaleRun(quick, sizesFlag, scaleBlocksFlag, cacheFlag, plotsDir)
}

func scaleRun(quick bool, sizesFlag, blocksFlag, cacheFlag, plotsDir string) (*ScaleResult, error) {
	if sizesFlag == "" {
		sizesFlag = scaleDefaultSizes
		if quick {
			sizesFlag, _, _ = strings.Cut(scaleDefaultSizes, ",")
		}
	}
	sizes, err := parseScaleSizes(sizesFlag)
	if err != nil {
		return nil, err
	}
	if blocksFlag == "" && quick {
		blocksFlag = scaleQuickBlocks
	}
	var lengths []uint64
	if blocksFlag != "" {
		if lengths, err = parseScaleBlocks(blocksFlag); err != nil {
			return nil, err
		}
	}
	largeN, standardN := 100, 1000
	if quick {
		largeN, standardN = 10, 20
	}
	dir := cacheFlag
	if dir == "" {
		ucd, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no --scale-cache and no user cache directory: %w", err)
		}
		dir = filepath.Join(ucd, "storesync", "scale")
	}
	c, err := openScaleCache(dir, scaleLargeChain)
	if err != nil {
		return nil, err
	}
	defer c.close()
	fmt.Fprintf(os.Stderr, "scale: cache %s: %s\n", dir, c.describe())
	res := &ScaleResult{Cache: dir, LargeBlocks: largeN, StandardBlocks: standardN}
	for _, size := range sizes {
		src, n, err := c.stateFor(size)
		if err != nil {
			return nil, fmt.Errorf("state of %g keys: %w", size, err)
		}
		row := c.row(size, n)
		if row.DiskBytes, err = diskBytes(src); err != nil {
			return nil, err
		}
		row.BytesPerKey = float64(row.DiskBytes) / float64(row.Keys)
		scratch := filepath.Join(dir, "scratch")
		if err := os.RemoveAll(scratch); err != nil {
			return nil, err
		}
		t := time.Now()
		if err := copyDir(src, scratch); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "scale %g: %d blocks, %d keys, %.0f MB; copied to %s in %s\n",
			size, n, row.Keys, float64(row.DiskBytes)/1e6, scratch, time.Since(t).Round(time.Millisecond))
		cfg := scaleChildConfig{Dir: scratch, Chain: scaleLargeChain, Large: largeN, Standard: standardN, ReadFor: scaleReadFor, RecordLevels: scaleRecordLevels, NodeCacheMiB: scaleNodeCacheMiB}
		if scaleProfileDir != "" {
			if err := os.MkdirAll(scaleProfileDir, 0o755); err != nil {
				return nil, err
			}
			cfg.Profile = filepath.Join(scaleProfileDir, sizeLabel(size))
		}
		m, err := runScaleChild(cfg)
		if rerr := os.RemoveAll(scratch); err == nil {
			err = rerr
		}
		if err != nil {
			return nil, fmt.Errorf("state of %g keys: %w", size, err)
		}
		row.ScaleMeasure = *m
		row.KeysAfter = row.Keys + m.AddedKeys
		res.Rows = append(res.Rows, row)
	}
	if len(lengths) > 0 {
		if res.BlockRows, err = scaleBlocks(filepath.Join(dir, scaleSmallDir), lengths); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(os.Stderr, "scale: cache %s: %s\n", dir, c.describe())
	printScaleTable(res)
	if len(res.BlockRows) > 0 {
		printScaleBlocksTable(res.BlockRows)
	}
	if plotsDir != "" {
		if err := writeScalePlots(plotsDir, res); err != nil {
			return nil, fmt.Errorf("plots: %w", err)
		}
	}
	return res, nil
}

// scaleBlocks measures the `small` chain at each length, from the cache of
// its states in dir.
func scaleBlocks(dir string, lengths []uint64) ([]ScaleBlocksRow, error) {
	c, err := openScaleCache(dir, scaleSmallChain)
	if err != nil {
		return nil, err
	}
	defer c.close()
	fmt.Fprintf(os.Stderr, "scale blocks: cache %s: %s\n", dir, c.describe())
	var rows []ScaleBlocksRow
	for _, n := range lengths {
		src, err := c.stateAt(n)
		if err != nil {
			return nil, fmt.Errorf("chain of %d small blocks: %w", n, err)
		}
		row := ScaleBlocksRow{Blocks: n, Keys: c.keysAt(n)}
		if row.DiskBytes, err = diskBytes(src); err != nil {
			return nil, err
		}
		row.BytesPerBlock = float64(row.DiskBytes) / float64(n)
		scratch := c.path("scratch")
		if err := os.RemoveAll(scratch); err != nil {
			return nil, err
		}
		t := time.Now()
		if err := copyDir(src, scratch); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "scale blocks %d: %d keys, %.0f MB; copied to %s in %s\n",
			n, row.Keys, float64(row.DiskBytes)/1e6, scratch, time.Since(t).Round(time.Millisecond))
		m, err := runScaleChild(scaleChildConfig{Dir: scratch, Chain: scaleSmallChain, Reads: scaleBlocksReadMethods, ReadFor: scaleReadFor, RecordLevels: scaleRecordLevels})
		if rerr := os.RemoveAll(scratch); err == nil {
			err = rerr
		}
		if err != nil {
			return nil, fmt.Errorf("chain of %d small blocks: %w", n, err)
		}
		row.ScaleMeasure = *m
		rows = append(rows, row)
	}
	fmt.Fprintf(os.Stderr, "scale blocks: cache %s: %s\n", dir, c.describe())
	return rows, nil
}

// parseScaleBlocks reads "1e3,1e5": whole numbers of blocks, sorted,
// without duplicates, from 1 to scaleMaxBlocks.
func parseScaleBlocks(s string) ([]uint64, error) {
	var out []uint64
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("--scale-blocks: %q is not a number of blocks", f)
		}
		if v < 1 || v > scaleMaxBlocks || v != math.Trunc(v) {
			return nil, fmt.Errorf("--scale-blocks: %g blocks: want a whole number from 1 to %g", v, float64(scaleMaxBlocks))
		}
		out = append(out, uint64(v))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// parseScaleSizes reads "1e5,1e6": sorted, without duplicates, each more
// than genesis holds (a state needs one block at least).
func parseScaleSizes(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("--scale-sizes: %q is not a number of keys", f)
		}
		if v <= workload.GenesisAccounts || v > 1e10 {
			return nil, fmt.Errorf("--scale-sizes: %g keys: want more than genesis's %d and at most 1e10", v, workload.GenesisAccounts)
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// --- the cache of states (parent) ---

// scaleCache is the cache directory. Owned by the parent; not thread-safe.
type scaleCache struct {
	dir     string
	chain   scaleChain
	genesis *genesis.File
	keys    workload.Keys
	counts  []blockCount // counts[i]: block i+1
	log     *os.File     // counts.txt, appended to as blocks are counted
	lock    *os.File     // holds an exclusive flock while the cache is in use
}

// blockCount is one block of the chain; notes and nullifiers are cumulative
// (blocks 1..n), so a state's keys are one lookup.
type blockCount struct {
	notes, nullifiers uint64
	commitment        merkle.Hash
}

func openScaleCache(dir string, ch scaleChain) (*scaleCache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "states"), 0o755); err != nil {
		return nil, fmt.Errorf("scale cache: %w", err)
	}
	g, keys, err := ch.genesis()
	if err != nil {
		return nil, err
	}
	c := &scaleCache{dir: dir, chain: ch, genesis: g, keys: keys}
	// Two runs growing the same base would each corrupt the other's.
	if c.lock, err = os.OpenFile(c.path("lock"), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, fmt.Errorf("scale cache: %w", err)
	}
	if err := unix.Flock(int(c.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		c.lock.Close()
		return nil, fmt.Errorf("scale cache %s: another run holds it: %w", dir, err)
	}
	if err := c.loadCounts(); err != nil {
		c.close()
		return nil, fmt.Errorf("scale cache %s: %w", dir, err)
	}
	return c, nil
}

func (c *scaleCache) close() {
	if c.log != nil {
		_ = c.log.Close()
	}
	_ = c.lock.Close() // and with it the lock
}

func (c *scaleCache) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

func (c *scaleCache) snapshot(n uint64) string {
	return c.path("states", fmt.Sprintf("blocks-%06d", n))
}

// loadCounts reads counts.txt up to its first bad line (a run killed while
// writing one) and rewrites it without what follows.
func (c *scaleCache) loadCounts() error {
	name := c.path("counts.txt")
	data, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var good []byte
	var prev blockCount
	for line := range bytes.Lines(data) {
		var n, notes, nfs uint64
		var hx string
		if _, err := fmt.Sscanf(string(line), "%d %d %d %s\n", &n, &notes, &nfs, &hx); err != nil || n != uint64(len(c.counts))+1 {
			break
		}
		h, err := hex.DecodeString(hx)
		if err != nil || len(h) != merkle.Size {
			break
		}
		bc := blockCount{notes: prev.notes + notes, nullifiers: prev.nullifiers + nfs}
		copy(bc.commitment[:], h)
		c.counts, prev = append(c.counts, bc), bc
		good = append(good, line...)
	}
	if len(good) != len(data) {
		if err := os.WriteFile(name, good, 0o644); err != nil {
			return err
		}
	}
	c.log, err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	return err
}

// record counts block b, or checks it is the block counted before.
func (c *scaleCache) record(b *block.Block) error {
	n := b.Header.Number
	com := b.Header.Commitment()
	if n <= uint64(len(c.counts)) {
		if c.counts[n-1].commitment != com {
			return fmt.Errorf("block %d is %s, %s says %s: the cache holds another chain (an older workload?); delete %s",
				n, com.Short(), c.path("counts.txt"), c.counts[n-1].commitment.Short(), c.dir)
		}
		return nil
	}
	if n != uint64(len(c.counts))+1 {
		return fmt.Errorf("count block %d: counts end at block %d", n, len(c.counts))
	}
	var prev blockCount
	if n > 1 {
		prev = c.counts[n-2]
	}
	c.counts = append(c.counts, blockCount{notes: prev.notes + uint64(len(b.Body.Notes)),
		nullifiers: prev.nullifiers + uint64(len(b.Body.Nullifiers)), commitment: com})
	if _, err := fmt.Fprintf(c.log, "%d %d %d %s\n", n, len(b.Body.Notes), len(b.Body.Nullifiers), com); err != nil {
		return fmt.Errorf("count block %d: %w", n, err)
	}
	return nil
}

// counted returns the cumulative counts through block n (zero for genesis).
// CONTRACT: n <= len(c.counts).
func (c *scaleCache) counted(n uint64) blockCount {
	if n == 0 {
		return blockCount{}
	}
	return c.counts[n-1]
}

// commitment returns block n's commitment. CONTRACT: n <= len(c.counts).
func (c *scaleCache) commitment(n uint64) merkle.Hash {
	if n == 0 {
		return c.genesis.Commitment
	}
	return c.counts[n-1].commitment
}

// keysAt is how many keys the state after block n holds.
// CONTRACT: n <= len(c.counts).
func (c *scaleCache) keysAt(n uint64) uint64 {
	bc := c.counted(n)
	return workload.GenesisAccounts + workload.NewAccountsPerBlock*n + bc.notes + bc.nullifiers
}

// blocksFor returns the first block whose state holds size keys, if the
// counts reach it.
func (c *scaleCache) blocksFor(size float64) (uint64, bool) {
	lo, hi := uint64(0), uint64(len(c.counts))+1 // the answer is in [lo, hi); hi: not counted
	for lo < hi {
		mid := lo + (hi-lo)/2
		if mid <= uint64(len(c.counts)) && float64(c.keysAt(mid)) >= size {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, lo <= uint64(len(c.counts))
}

func (c *scaleCache) row(size float64, n uint64) ScaleRow {
	bc := c.counted(n)
	return ScaleRow{Size: size, Blocks: n, Nullifiers: bc.nullifiers, Notes: bc.notes,
		Accounts: workload.GenesisAccounts + workload.NewAccountsPerBlock*n, Keys: c.keysAt(n)}
}

// stateFor returns a closed store directory holding exactly the first state
// of at least size keys, and its block count, growing or building it if the
// cache has none.
func (c *scaleCache) stateFor(size float64) (string, uint64, error) {
	limit := uint64(size/scaleMinNotesPerBlock) + 1
	return c.state(func() (uint64, bool) { return c.blocksFor(size) }, func(n uint64) bool { return float64(c.keysAt(n)) >= size }, limit)
}

// stateAt returns a closed store directory holding exactly blocks 0..n,
// growing or building it if the cache has none.
func (c *scaleCache) stateAt(n uint64) (string, error) {
	src, got, err := c.state(func() (uint64, bool) { return n, true }, func(m uint64) bool { return m >= n }, n)
	if err == nil && got != n {
		err = fmt.Errorf("the state at block %d was asked, the cache gave block %d", n, got)
	}
	return src, err
}

// state returns the state at the block `at` names, if it can name one once
// base's blocks are counted, else grows base until done says its tip is
// enough, never past block limit.
func (c *scaleCache) state(at func() (uint64, bool), done func(uint64) bool, limit uint64) (string, uint64, error) {
	base := c.path("base")
	tip, err := c.baseTip()
	if err != nil {
		return "", 0, err
	}
	if n, ok := at(); ok && n <= tip {
		if n == tip {
			return base, n, nil
		}
		if snap := c.snapshot(n); exists(snap) {
			return snap, n, nil
		}
		return c.snapshot(n), n, c.buildSnapshot(n)
	}
	// Base must grow: keep the state it holds (a size measured before) first.
	if tip > 0 && !exists(c.snapshot(tip)) {
		if err := c.copyInto(base, c.snapshot(tip)); err != nil {
			return "", 0, err
		}
	}
	n, err := c.grow(base, done, limit, true)
	return base, n, err
}

// buildSnapshot makes the state at block n, below base's tip, from the
// largest snapshot below it (or from genesis).
func (c *scaleCache) buildSnapshot(n uint64) error {
	entries, err := os.ReadDir(c.path("states"))
	if err != nil {
		return err
	}
	var from string
	var fromN uint64
	for _, e := range entries {
		var m uint64
		if _, err := fmt.Sscanf(e.Name(), "blocks-%d", &m); err == nil && e.Name() == filepath.Base(c.snapshot(m)) && m < n && m >= fromN {
			from, fromN = c.path("states", e.Name()), m
		}
	}
	tmp := c.path("states", ".building")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if from != "" {
		if err := copyDir(from, tmp); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "scale: building the state at block %d from block %d\n", n, fromN)
	if _, err := c.grow(tmp, func(m uint64) bool { return m >= n }, n, false); err != nil {
		return err
	}
	return os.Rename(tmp, c.snapshot(n))
}

// copyInto copies a closed store to dst through a temporary name, so that
// dst exists only complete.
func (c *scaleCache) copyInto(src, dst string) error {
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	t := time.Now()
	if err := copyDir(src, tmp); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "scale: kept %s (%s)\n", dst, time.Since(t).Round(time.Millisecond))
	return os.Rename(tmp, dst)
}

// baseTip returns base's committed tip: from base.tip if base was closed
// cleanly, else by opening it (which repairs a crash) and counting what it
// holds.
func (c *scaleCache) baseTip() (uint64, error) {
	base, marker := c.path("base"), c.path("base.tip")
	if data, err := os.ReadFile(marker); err == nil {
		var n uint64
		var hx string
		if _, err := fmt.Sscanf(string(data), "%d %s", &n, &hx); err == nil && n <= uint64(len(c.counts)) && c.commitment(n).String() == hx {
			return n, nil
		}
	}
	if !exists(base) {
		return 0, nil
	}
	st, err := store.Open(base, c.genesis)
	if err != nil {
		return 0, fmt.Errorf("%w (delete %s if it is from another version)", err, c.dir)
	}
	tip, err := c.catchUp(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return tip, c.writeMarker(tip)
}

func (c *scaleCache) writeMarker(tip uint64) error {
	return os.WriteFile(c.path("base.tip"), fmt.Appendf(nil, "%d %s\n", tip, c.commitment(tip)), 0o644)
}

// catchUp counts the blocks of st past the counts and checks its tip is
// the chain's.
func (c *scaleCache) catchUp(st *store.Store) (uint64, error) {
	sn := st.Snapshot()
	tip := sn.Committed()
	for n := uint64(len(c.counts)) + 1; n <= tip; n++ {
		b, err := sn.Block(n)
		if err != nil {
			return 0, err
		}
		if err := c.record(b); err != nil {
			return 0, err
		}
	}
	if got := c.commitment(tip); got != sn.State.Commitment {
		return 0, fmt.Errorf("store %s: block %d is %s, %s says %s: delete %s", st.Dir(), tip, sn.State.Commitment.Short(), c.path("counts.txt"), got.Short(), c.dir)
	}
	return tip, nil
}

// grow opens the store in dir (creating it) and applies blocks of the
// chain's profile, each with its proof, until done says its tip is enough;
// never past block limit, nor for longer than scaleGrowLimit.
func (c *scaleCache) grow(dir string, done func(uint64) bool, limit uint64, isBase bool) (uint64, error) {
	if isBase {
		if err := os.Remove(c.path("base.tip")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	st, err := store.Open(dir, c.genesis)
	if err != nil {
		return 0, fmt.Errorf("%w (delete %s if it is from another version)", err, c.dir)
	}
	tip, err := c.growOpen(st, done, limit)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("grow %s: %w", dir, err)
	}
	if isBase {
		return tip, c.writeMarker(tip)
	}
	return tip, nil
}

func (c *scaleCache) growOpen(st *store.Store, done func(uint64) bool, limit uint64) (uint64, error) {
	tip, err := c.catchUp(st)
	if err != nil {
		return 0, err
	}
	p, err := workload.ProfileByName(c.chain.Profile)
	if err != nil {
		return 0, err
	}
	gen := workload.NewGenerator(c.chain.Seed, p, c.keys.Producer, st)
	ctx := context.Background()
	from, start := tip, time.Now()
	last := start
	for !done(tip) {
		if tip >= limit {
			return 0, fmt.Errorf("block %d reached without the size asked", limit)
		}
		if time.Since(start) > scaleGrowLimit {
			return 0, fmt.Errorf("still growing after %s, at block %d", scaleGrowLimit, tip)
		}
		sn := st.Snapshot()
		b, err := gen.Next(sn.State, sn.State.Header.Timestamp+scaleIntervalMs)
		if err != nil {
			return 0, err
		}
		if _, err := st.ApplyBlock(ctx, b); err != nil {
			return 0, err
		}
		tip = b.Header.Number
		if err := st.ApplyProof(ctx, tip, block.Prove(c.keys.Prover, tip, st.Snapshot().State.Commitment).Encode()); err != nil {
			return 0, err
		}
		if err := c.record(b); err != nil {
			return 0, err
		}
		if time.Since(last) >= scaleProgressEvery {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "scale: growing %s: block %d, %d keys, %.1f blocks/s\n",
				st.Dir(), tip, c.keysAt(tip), float64(tip-from)/time.Since(start).Seconds())
		}
	}
	if tip > from {
		fmt.Fprintf(os.Stderr, "scale: grew %s from block %d to %d (%d keys) in %s\n", st.Dir(), from, tip, c.keysAt(tip), time.Since(start).Round(time.Millisecond))
	}
	return tip, nil
}

// describe says what the cache holds.
func (c *scaleCache) describe() string {
	var parts []string
	if data, err := os.ReadFile(c.path("base.tip")); err == nil {
		var n uint64
		if _, err := fmt.Sscan(string(data), &n); err == nil && n <= uint64(len(c.counts)) {
			parts = append(parts, fmt.Sprintf("base at block %d (%d keys)", n, c.keysAt(n)))
		}
	} else if exists(c.path("base")) {
		parts = append(parts, "base (not closed cleanly)")
	}
	if entries, err := os.ReadDir(c.path("states")); err == nil {
		var snaps []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "blocks-") && !strings.HasSuffix(e.Name(), ".tmp") {
				snaps = append(snaps, strings.TrimLeft(strings.TrimPrefix(e.Name(), "blocks-"), "0"))
			}
		}
		if len(snaps) > 0 {
			parts = append(parts, "states at blocks "+strings.Join(snaps, ", "))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "empty")
	}
	du, _ := diskBytes(c.dir)
	return fmt.Sprintf("%s; %.2f GB on disk", strings.Join(parts, "; "), float64(du)/1e9)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// copyDir copies the directory src to dst, which must not exist, sharing
// extents where the file system can (btrfs, xfs).
func copyDir(src, dst string) error {
	if out, err := exec.Command("cp", "-a", "--reflink=auto", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s to %s: %v: %s", src, dst, err, bytes.TrimSpace(out))
	}
	return nil
}

// diskBytes is what du reports for dir: the blocks allocated to its files.
func diskBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted by a compaction meanwhile
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disk use of %s: %w", dir, err)
	}
	return n, nil
}

// --- the measurement (child) ---

type scaleChildConfig struct {
	Dir      string     `json:"dir"`
	Chain    scaleChain `json:"chain"` // the chain of the store in Dir
	Large    int        `json:"large"`
	Standard int        `json:"standard"`
	// Reads are the methods driven, in order; none: scaleReadMethods.
	Reads   []string      `json:"reads,omitempty"`
	ReadFor time.Duration `json:"read_for"`
	// Profile, when set, is the path prefix of the CPU profiles of the
	// reads and the applies.
	Profile string `json:"profile,omitempty"`
	// RecordLevels is the store's record span (--scale-record-levels); 0:
	// the store's default.
	RecordLevels int `json:"record_levels,omitempty"`
	// NodeCacheMiB is the measured store's --node-cache
	// (--scale-node-cache); 0: the store's default.
	NodeCacheMiB int `json:"node_cache_mib,omitempty"`
}

// scaleRecordLevels is --scale-record-levels (main binds it): the record
// span of every store the scenario opens, states it builds included.
var scaleRecordLevels int

// useRecordLevels makes the stores this process opens span n levels a
// record (0: the store's default).
func useRecordLevels(n int) {
	if n > 0 {
		store.DefaultOptions.RecordLevels = n
	}
}

// scaleNodeCacheMiB is --scale-node-cache (main binds it): the node cache
// of the stores measured (not of those that build the states, whose
// records it does not change).
var scaleNodeCacheMiB int

// scaleProfileDir is --scale-profile (main binds it).
var scaleProfileDir string

// profiled runs f under a CPU profile written to prefix-name.pprof, or
// just runs it without a prefix.
func profiled(prefix, name string, f func() error) error {
	if prefix == "" {
		return f()
	}
	out, err := os.Create(prefix + "-" + name + ".pprof")
	if err != nil {
		return err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return f()
}

// scaleKillConfig is the grandchild's argument.
type scaleKillConfig struct {
	Dir   string     `json:"dir"`
	Chain scaleChain `json:"chain"`
}

// runSelf runs this binary as the hidden child that name selects, with cfg
// as its JSON argument, and returns what it printed.
func runSelf(name string, cfg any) ([]byte, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	arg, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), scaleChildLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, name, string(arg))
	cmd.Stderr = os.Stderr
	return cmd.Output()
}

// runScaleChild measures the store in cfg.Dir in a child process.
func runScaleChild(cfg scaleChildConfig) (*ScaleMeasure, error) {
	out, err := runSelf(scaleChildArg, cfg)
	if err != nil {
		return nil, fmt.Errorf("measurement child: %w", err)
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var m ScaleMeasure
	if err := json.Unmarshal(lines[len(lines)-1], &m); err != nil {
		return nil, fmt.Errorf("measurement child's result %q: %w", lines[len(lines)-1], err)
	}
	return &m, nil
}

// scaleChild runs the hidden child or grandchild that args name, and
// reports whether they named one. main and TestMain call it first.
func scaleChild(args []string) bool {
	if len(args) != 2 {
		return false
	}
	var err error
	switch args[0] {
	case scaleChildArg:
		var cfg scaleChildConfig
		if err = json.Unmarshal([]byte(args[1]), &cfg); err == nil {
			useRecordLevels(cfg.RecordLevels)
			if cfg.NodeCacheMiB > 0 {
				store.DefaultOptions.NodeCacheBytes = int64(cfg.NodeCacheMiB) << 20
			}
			var m *ScaleMeasure
			if m, err = scaleMeasure(cfg); err == nil {
				err = json.NewEncoder(os.Stdout).Encode(m)
			}
		}
	case scaleKillArg:
		var cfg scaleKillConfig
		if err = json.Unmarshal([]byte(args[1]), &cfg); err == nil {
			err = scaleKillTarget(cfg)
		}
	case scalePrepareArg:
		var cfg scaleChildConfig
		if err = json.Unmarshal([]byte(args[1]), &cfg); err == nil {
			useRecordLevels(cfg.RecordLevels)
			var g *genesis.File
			var keys workload.Keys
			if g, keys, err = cfg.Chain.genesis(); err == nil {
				var path string
				if path, err = scalePrepare(cfg.Dir, g, cfg.Chain.Seed, keys, cfg.Large, cfg.Standard); err == nil {
					fmt.Println(path)
				}
			}
		}
	default:
		return false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", args[0], err)
		os.Exit(1)
	}
	return true
}

// scaleMeasure is the child: it owns the store copy in cfg.Dir.
func scaleMeasure(cfg scaleChildConfig) (*ScaleMeasure, error) {
	g, keys, err := cfg.Chain.genesis()
	if err != nil {
		return nil, err
	}
	// The heap limit the primary and the follower set by default.
	debug.SetMemoryLimit(store.MemoryLimit(store.DefaultOptions, 0))
	reads := cfg.Reads
	if len(reads) == 0 {
		reads = scaleReadMethods
	}
	m := &ScaleMeasure{}
	// In a grandchild, so that the memory after open is the store's.
	preparedFile, err := runScalePrepare(cfg)
	if err != nil {
		return nil, err
	}
	if preparedFile != "" {
		defer os.Remove(preparedFile)
	}
	// The copy was just written: its pages are in the cache, which would
	// make the first open a warm one, whatever a real restart finds.
	if err := dropPageCache(cfg.Dir); err != nil {
		return nil, err
	}
	if m.CacheBeforeMB, err = pageCacheMB(cfg.Dir); err != nil {
		return nil, err
	}
	t := time.Now()
	st, err := store.Open(cfg.Dir, g)
	if err != nil {
		return nil, err
	}
	m.OpenS = time.Since(t).Seconds()
	closeStore := func() error {
		if st == nil {
			return nil
		}
		err := st.Close()
		st = nil
		return err
	}
	defer closeStore()
	if m.RSSOpenMB, m.HeapOpenMB, err = memoryMB(); err != nil {
		return nil, err
	}
	if m.CacheOpenMB, err = pageCacheMB(cfg.Dir); err != nil {
		return nil, err
	}
	// A store serving for a while has its trees' pinned tops in memory,
	// read in the background after Open.
	<-st.Preloaded()
	// Loaded after the memory after open is taken: they are the bench's.
	prepared, err := loadPrepared(preparedFile)
	if err != nil {
		return nil, err
	}
	// The state database's compactions left from growing the state are the
	// cache's history, not this size's cost: a store serving for a while
	// has worked them off. Wait for them (bounded), so that the timed work
	// competes only with the compactions its own writes cause; before the
	// page cache is warmed, as they replace the files it would hold.
	m.SettleS, m.DebtLeftMB = settleCompactions(st, scaleSettleMax)
	// Reads and applies with the page cache warm, as on a store serving
	// for a while (the state fits in this machine's memory several times).
	if err := warmPageCache(cfg.Dir); err != nil {
		return nil, err
	}
	// Reads first, on the state of the size asked: the blocks below grow a
	// small state several times over.
	if err := profiled(cfg.Profile, "reads", func() (err error) {
		m.Reads, err = scaleReads(st, cfg.Chain.Seed, reads, cfg.ReadFor)
		return err
	}); err != nil {
		return nil, err
	}
	flushed0, compacted0 := st.StateWrites()
	if err := profiled(cfg.Profile, "apply", func() error {
		var added uint64
		if m.Large, added, err = scaleApply(st, prepared.large); err != nil {
			return err
		}
		m.AddedKeys += added
		if m.Standard, added, err = scaleApply(st, prepared.standard); err != nil {
			return err
		}
		m.AddedKeys += added
		return nil
	}); err != nil {
		return nil, err
	}
	flushed1, compacted1 := st.StateWrites()
	m.FlushedMB, m.CompactedMB = float64(flushed1-flushed0)/(1<<20), float64(compacted1-compacted0)/(1<<20)
	// Not in the profile: the blocks made on the store itself, which read
	// every path first, are the generator's cost more than the store's.
	for _, more := range []struct {
		profile string
		n       int
	}{{"large", cfg.Large - len(prepared.large)}, {"standard", cfg.Standard - len(prepared.standard)}} {
		added, err := scaleGrowUntimed(st, cfg.Chain.Seed, keys, more.profile, more.n)
		if err != nil {
			return nil, err
		}
		m.AddedKeys += added
	}
	if m.RSSBlocksMB, m.HeapBlocksMB, err = memoryMB(); err != nil {
		return nil, err
	}
	if m.CacheBlocksMB, err = pageCacheMB(cfg.Dir); err != nil {
		return nil, err
	}
	if err := closeStore(); err != nil {
		return nil, err
	}
	t = time.Now()
	if st, err = store.Open(cfg.Dir, g); err != nil {
		return nil, fmt.Errorf("reopen after a clean stop: %w", err)
	}
	m.ReopenCleanS = time.Since(t).Seconds()
	if err := closeStore(); err != nil {
		return nil, err
	}
	if err := scaleKillReopen(cfg.Dir, cfg.Chain, g, m); err != nil {
		return nil, err
	}
	applied := ""
	if cfg.Large > 0 || cfg.Standard > 0 {
		applied = fmt.Sprintf("; %d large blocks %.1f ms, %d standard %.1f ms", m.Large.Blocks, m.Large.TotalMs, m.Standard.Blocks, m.Standard.TotalMs)
	}
	fmt.Fprintf(os.Stderr, "scale child: open %.2fs, RSS %.0f MB; compactions settled in %.1fs (%.0f MB of debt left)%s; reopen %.2fs clean, %.2fs after SIGKILL %.0f ms into block %d (%d blocks replayed)\n",
		m.OpenS, m.RSSOpenMB, m.SettleS, m.DebtLeftMB, applied, m.ReopenCleanS, m.ReopenKillS, m.KilledIntoMs, m.KillTip+1, m.KillReplayed)
	return m, nil
}

// scaleSettleMax bounds the wait for the state database's compactions
// before the timed work; scaleSettleQuiet is how long none must run for
// them to count as settled.
const (
	scaleSettleMax   = 2 * time.Minute
	scaleSettleQuiet = 2 * time.Second
)

// settleCompactions waits until st's state database has run no compaction
// for scaleSettleQuiet, or for max, and returns how long it waited and the
// debt Pebble still estimated then (MB; it need not reach 0 for the LSM to
// be at rest: below its thresholds nothing is scheduled).
func settleCompactions(st *store.Store, max time.Duration) (seconds, debtMB float64) {
	start, quietSince := time.Now(), time.Now()
	for {
		debt, running := st.Compacting()
		if running > 0 {
			quietSince = time.Now()
		}
		if time.Since(quietSince) >= scaleSettleQuiet || time.Since(start) >= max {
			return time.Since(start).Seconds(), float64(debt) / (1 << 20)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scaleTimed is how many of the blocks applied on top of a state are
// timed: the first few, while the state is still about the size measured
// (100 large blocks add 460,000 keys, five times the smallest state); the
// rest are applied for the memory figure after them.
var scaleTimed = map[string]int{"large": 20, "standard": 100}

// scalePrepared are the timed blocks, made before the store is opened.
type scalePrepared struct{ large, standard []*block.Block }

// scalePrepare makes the timed blocks (the first scaleTimed of large, then
// of standard, each on the state the one before leaves) on a copy of the
// store in dir, which it then deletes, and writes them to a file beside dir
// (returned). Made on the measured store, the generator's reads of every
// key's path (the double-spend checks it runs to build a valid block) would
// leave those nodes in that store's cache, and its apply would find them
// there: a follower applies blocks made elsewhere, whose paths nothing in
// it has read.
func scalePrepare(dir string, g *genesis.File, seed uint64, keys workload.Keys, large, standard int) (string, error) {
	path := dir + ".blocks"
	large, standard = min(large, scaleTimed["large"]), min(standard, scaleTimed["standard"])
	if large+standard == 0 {
		return "", nil
	}
	gdir := dir + ".gen"
	if err := copyDir(dir, gdir); err != nil {
		return "", err
	}
	defer os.RemoveAll(gdir)
	st, err := store.Open(gdir, g)
	if err != nil {
		return "", fmt.Errorf("open the copy that makes the blocks: %w", err)
	}
	defer st.Close()
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	rules := state.RulesOf(g)
	s := st.Snapshot().State
	h := &preparedHistory{st: st, from: s.Header.Number + 1}
	for i, step := range []struct {
		profile string
		n       int
	}{{"large", large}, {"standard", standard}} {
		p, err := workload.ProfileByName(step.profile)
		if err != nil {
			return "", err
		}
		gen := workload.NewGenerator(seed, p, keys.Producer, h)
		for range step.n {
			b, err := gen.Next(s, s.Header.Timestamp+scaleIntervalMs)
			if err != nil {
				return "", err
			}
			a, err := s.Apply(b, rules)
			if err != nil {
				return "", err
			}
			s = a.State
			h.made = append(h.made, b)
			data := b.Encode()
			w.WriteByte(byte(i))
			w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
			w.Write(data)
		}
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("write the prepared blocks: %w", err)
	}
	return path, f.Close()
}

// runScalePrepare runs scalePrepare for cfg in a grandchild and returns the
// file it wrote ("" for none).
func runScalePrepare(cfg scaleChildConfig) (string, error) {
	out, err := runSelf(scalePrepareArg, cfg)
	if err != nil {
		return "", fmt.Errorf("prepare the timed blocks: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// loadPrepared reads back what scalePrepare wrote.
func loadPrepared(path string) (scalePrepared, error) {
	var out scalePrepared
	if path == "" {
		return out, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return out, err
	}
	for len(data) > 0 {
		if len(data) < 5 {
			return out, fmt.Errorf("prepared blocks: %d trailing bytes", len(data))
		}
		kind, n := data[0], int(binary.BigEndian.Uint32(data[1:5]))
		if len(data) < 5+n {
			return out, fmt.Errorf("prepared blocks: a block of %d bytes cut short", n)
		}
		b, err := block.Decode(data[5 : 5+n])
		if err != nil {
			return out, fmt.Errorf("prepared blocks: %w", err)
		}
		if kind == 0 {
			out.large = append(out.large, b)
		} else {
			out.standard = append(out.standard, b)
		}
		data = data[5+n:]
	}
	return out, nil
}

// preparedHistory is the store's blocks, then those made past its tip.
type preparedHistory struct {
	st   *store.Store
	from uint64 // the number of made[0]
	made []*block.Block
}

func (h *preparedHistory) Block(n uint64) (*block.Block, error) {
	if n >= h.from && n-h.from < uint64(len(h.made)) {
		return h.made[n-h.from], nil
	}
	return h.st.Block(n)
}

// scaleApply applies the blocks, timing each, and returns their mean cost
// and the keys they added.
func scaleApply(st *store.Store, blocks []*block.Block) (ScaleApply, uint64, error) {
	out := ScaleApply{Blocks: len(blocks)}
	if len(blocks) == 0 {
		return out, 0, nil
	}
	ctx := context.Background()
	var sum store.Report
	totals := make([]float64, 0, len(blocks))
	var added uint64
	for _, b := range blocks {
		t := time.Now()
		r, err := st.ApplyBlock(ctx, b)
		if err != nil {
			return out, 0, err
		}
		totals = append(totals, ms(time.Since(t)))
		added += uint64(len(b.Body.Notes)+len(b.Body.Nullifiers)) + workload.NewAccountsPerBlock
		sum.Validate += r.Validate
		sum.Trees += r.Trees
		sum.BlockFile += r.BlockFile
		sum.SQLite += r.SQLite
		sum.State += r.State
		sum.Nodes += r.Nodes
		sum.Pruned += r.Pruned
	}
	n := len(blocks)
	per := func(d time.Duration) float64 { return ms(d) / float64(n) }
	var total float64
	for _, t := range totals {
		total += t
	}
	out.ValidateMs, out.TreesMs, out.FileMs, out.SQLiteMs = per(sum.Validate), per(sum.Trees), per(sum.BlockFile), per(sum.SQLite)
	out.TotalMs, out.P99Ms = total/float64(n), percentile(totals, .99)
	out.StateMs = per(sum.State)
	out.Nodes, out.Pruned = float64(sum.Nodes)/float64(n), float64(sum.Pruned)/float64(n)
	out.RestMs = max(0, out.TotalMs-out.ValidateMs-out.TreesMs-out.FileMs-out.SQLiteMs-out.StateMs)
	return out, added, nil
}

// scaleGrowUntimed applies n more generated blocks of a profile, for the
// memory figure after them, and returns the keys they added.
func scaleGrowUntimed(st *store.Store, seed uint64, keys workload.Keys, profile string, n int) (uint64, error) {
	if n <= 0 {
		return 0, nil
	}
	p, err := workload.ProfileByName(profile)
	if err != nil {
		return 0, err
	}
	gen := workload.NewGenerator(seed, p, keys.Producer, st)
	var added uint64
	for range n {
		sn := st.Snapshot()
		b, err := gen.Next(sn.State, sn.State.Header.Timestamp+scaleIntervalMs)
		if err != nil {
			return 0, err
		}
		if _, err := st.ApplyBlock(context.Background(), b); err != nil {
			return 0, err
		}
		added += uint64(len(b.Body.Notes)+len(b.Body.Nullifiers)) + workload.NewAccountsPerBlock
	}
	return added, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// scaleRead is one read method: a call with request fields drawn from r.
// It returns how many items the answer held (blocks, accounts, nullifiers,
// headers or notes): a page of notes by tag holds more of them on a longer
// chain, so its calls are compared per note as well.
type scaleRead func(ctx context.Context, c storev1.StoreClient, r *rand.Rand) (int, error)

// scaleReads serves st (the chain of seed) with the real read server over
// gRPC on loopback and drives each of methods for `each`.
func scaleReads(st *store.Store, seed uint64, methods []string, each time.Duration) ([]ScaleReads, error) {
	sn := st.Snapshot()
	tip := sn.Committed()
	if tip == 0 {
		return nil, fmt.Errorf("reads: the store holds no block")
	}
	var nfs, ids [][]byte
	var tags []uint32
	k := min(tip, scaleSampleBlocks)
	for i := range k {
		b, err := sn.Block(1 + i*tip/k)
		if err != nil {
			return nil, err
		}
		for _, nf := range b.Body.Nullifiers[:min(len(b.Body.Nullifiers), scaleSamplePerBlock)] {
			nfs = append(nfs, slices.Clone(nf[:]))
		}
		for j, id := range b.NoteIDs()[:min(len(b.Body.Notes), scaleSamplePerBlock)] {
			ids = append(ids, slices.Clone(id[:]))
			tags = append(tags, b.Body.Notes[j].Tag)
		}
	}
	if len(nfs) == 0 { // blocks 1 and 2 spend nothing: ask for unspent ones
		for _, id := range ids {
			var h merkle.Hash
			copy(h[:], id)
			nf := workload.Nullifier(h)
			nfs = append(nfs, nf[:])
		}
	}
	accounts := uint64(workload.GenesisAccounts) + workload.NewAccountsPerBlock*tip
	pick := func(r *rand.Rand, pool [][]byte) [][]byte {
		out := make([][]byte, scaleBatch)
		for i := range out {
			out[i] = pool[r.IntN(len(pool))]
		}
		return out
	}
	reads := map[string]scaleRead{
		"GetBlockByNumber+proof": func(ctx context.Context, c storev1.StoreClient, r *rand.Rand) (int, error) {
			mb, err := c.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: 1 + r.Uint64N(tip), IncludeProof: true})
			if err == nil && (len(mb.Block) == 0 || len(mb.Proof) == 0) {
				err = fmt.Errorf("no block or no proof")
			}
			return 1, err
		},
		"GetAccount": func(ctx context.Context, c storev1.StoreClient, r *rand.Rand) (int, error) {
			id := workload.AccountID(seed, r.Uint64N(accounts))
			_, err := c.GetAccount(ctx, &storev1.GetAccountRequest{AccountId: id[:]})
			return 1, err
		},
		"CheckNullifiers": func(ctx context.Context, c storev1.StoreClient, r *rand.Rand) (int, error) {
			out, err := c.CheckNullifiers(ctx, &storev1.CheckNullifiersRequest{Nullifiers: pick(r, nfs)})
			return len(out.GetNullifiers()), err
		},
		"GetBlockHeaderByNumber+MMR": func(ctx context.Context, c storev1.StoreClient, r *rand.Rand) (int, error) {
			n := r.Uint64N(tip)
			h, err := c.GetBlockHeaderByNumber(ctx, &storev1.BlockHeaderByNumberRequest{BlockNum: &n, IncludeMmrProof: true})
			if err == nil && len(h.MmrProof) == 0 {
				err = fmt.Errorf("no MMR proof")
			}
			return 1, err
		},
		"GetNotesById": func(ctx context.Context, c storev1.StoreClient, r *rand.Rand) (int, error) {
			out, err := c.GetNotesById(ctx, &storev1.GetNotesByIdRequest{NoteIds: pick(r, ids)})
			return len(out.GetNotes()), err
		},
		"SyncNotes": func(ctx context.Context, c storev1.StoreClient, r *rand.Rand) (int, error) {
			out, err := c.SyncNotes(ctx, &storev1.SyncNotesRequest{Tags: []uint32{tags[r.IntN(len(tags))]}, FromBlock: r.Uint64N(tip + 1)})
			return len(out.GetNotes()), err
		},
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer(api.PublicServerOptions()...)
	api.RegisterPublic(gs, st)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer func() { gs.Stop(); <-served }()
	client, closeConn, err := dial(lis.Addr().String())
	if err != nil {
		return nil, err
	}
	defer closeConn()
	var out []ScaleReads
	for _, name := range methods {
		call, ok := reads[name]
		if !ok {
			return nil, fmt.Errorf("reads: no method %q", name)
		}
		// One call first: a request the server refuses is a bug here, not
		// a throughput of zero.
		if _, err := call(context.Background(), client, rand.New(rand.NewPCG(0, 0))); err != nil {
			return nil, fmt.Errorf("reads: %s: %w", name, err)
		}
		rr, err := driveRead(client, call, each)
		if err != nil {
			return nil, fmt.Errorf("reads: %s: %w", name, err)
		}
		rr.Method = name
		out = append(out, rr)
	}
	return out, nil
}

// driveRead calls from scaleReadClients goroutines for d.
func driveRead(c storev1.StoreClient, call scaleRead, d time.Duration) (ScaleReads, error) {
	// Ended by a cancel, not a deadline: a deadline would travel with each
	// call, and calls started in its last milliseconds would fail at the
	// server before the loop sees it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := time.AfterFunc(d, cancel)
	defer stop.Stop()
	var calls, items, errs atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for g := range scaleReadClients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 11))
			for i := 0; i < scaleMaxCalls && ctx.Err() == nil; i++ {
				if k, err := call(ctx, c, r); err == nil {
					calls.Add(1)
					items.Add(int64(k))
				} else if ctx.Err() == nil {
					errs.Add(1)
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	out := ScaleReads{PerS: float64(calls.Load()) / el.Seconds(), Calls: calls.Load(), Items: items.Load(), Errors: errs.Load()}
	if p := first.Load(); p != nil {
		if out.Calls == 0 {
			return out, *p
		}
		fmt.Fprintf(os.Stderr, "scale child: %d calls failed, the first: %v\n", out.Errors, *p)
	}
	return out, nil
}

// scaleKillReopen has a grandchild apply blocks of ch to the store in dir,
// kills it mid-apply with SIGKILL, and times the Open that recovers the
// store.
func scaleKillReopen(dir string, ch scaleChain, g *genesis.File, m *ScaleMeasure) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	arg, err := json.Marshal(scaleKillConfig{Dir: dir, Chain: ch})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), scaleKillLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, scaleKillArg, string(arg))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// The grandchild prints one line per block: the channel holds them all.
	lines := make(chan string, max(ch.KillBlocks, 0)+1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var applied int
	var lastLine time.Time
	var kill <-chan time.Time
	var timer *time.Timer
	parse := func(l string) (took float64, ok bool) {
		var n uint64
		if _, err := fmt.Sscanf(l, "applied %d %f", &n, &took); err != nil {
			return 0, false
		}
		applied, m.KillTip = applied+1, n
		return took, true
	}
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait // ended by itself: reported below
			}
			took, ok := parse(l)
			if !ok {
				continue
			}
			lastLine = time.Now()
			if applied == scaleKillAfter {
				// Killed halfway through the next block's apply, if it takes
				// as long as this one did.
				timer = time.NewTimer(time.Duration(took / 2 * float64(time.Millisecond)))
				kill = timer.C
			}
		case <-kill:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if timer != nil {
		timer.Stop()
	}
	killed := time.Now()
	_ = cmd.Process.Kill()
	// To EOF, before Wait closes the pipe. A block of milliseconds (small)
	// may have been reported before the kill and not read yet: the tip
	// reported is the last line, KilledIntoMs counts from the last one read.
	for l := range lines {
		parse(l)
	}
	werr := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || applied < scaleKillAfter {
		return fmt.Errorf("the apply to be killed ended by itself after %d blocks (%v)", applied, werr)
	}
	m.KilledIntoMs = ms(killed.Sub(lastLine))
	t := time.Now()
	st, err := store.Open(dir, g)
	if err != nil {
		return fmt.Errorf("reopen after SIGKILL: %w", err)
	}
	m.ReopenKillS = time.Since(t).Seconds()
	m.KillRecovered, _ = st.Tips()
	m.KillReplayed = st.Replayed()
	if err := st.Close(); err != nil {
		return err
	}
	if m.KillRecovered < m.KillTip || m.KillRecovered > m.KillTip+1 {
		return fmt.Errorf("after SIGKILL at reported tip %d the store opened at %d", m.KillTip, m.KillRecovered)
	}
	return nil
}

// scaleKillTarget is the grandchild: it prepares cfg.Chain.KillBlocks
// blocks of the chain's profile in memory, then applies them, printing
// "applied n ms" after each, until it is killed.
func scaleKillTarget(cfg scaleKillConfig) error {
	g, keys, err := cfg.Chain.genesis()
	if err != nil {
		return err
	}
	p, err := workload.ProfileByName(cfg.Chain.Profile)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Dir, g)
	if err != nil {
		return err
	}
	defer st.Close()
	gen := workload.NewGenerator(cfg.Chain.Seed, p, keys.Producer, st)
	rules := state.RulesOf(g)
	s := st.Snapshot().State
	blocks := make([]*block.Block, 0, max(cfg.Chain.KillBlocks, 0))
	for range cfg.Chain.KillBlocks {
		b, err := gen.Next(s, s.Header.Timestamp+scaleIntervalMs)
		if err != nil {
			return err
		}
		a, err := s.Apply(b, rules)
		if err != nil {
			return err
		}
		blocks, s = append(blocks, b), a.State
	}
	for _, b := range blocks {
		t := time.Now()
		if _, err := st.ApplyBlock(context.Background(), b); err != nil {
			return err
		}
		fmt.Printf("applied %d %.3f\n", b.Header.Number, ms(time.Since(t)))
	}
	return nil
}

// memoryMB returns this process's VmRSS and live heap after a GC.
func memoryMB() (rss, heap float64, err error) {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	for l := range strings.Lines(string(data)) {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, float64(ms.HeapAlloc) / (1 << 20), err
		}
	}
	return 0, 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

// pageCacheMB is how much of the files under dir is in the page cache:
// mincore over a read-only mapping of each (mapping faults nothing in).
func pageCacheMB(dir string) (float64, error) {
	ps := int64(os.Getpagesize())
	var pages int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		// The state database deletes files as it compacts, while this
		// walks an open store: a file gone meanwhile holds no pages.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n, err := residentPages(path, ps)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		pages += n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("page cache of %s: %w", dir, err)
	}
	return float64(pages*ps) / (1 << 20), nil
}

func residentPages(path string, ps int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() == 0 {
		return 0, err
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(info.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("mmap %s: %w", path, err)
	}
	defer unix.Munmap(data)
	vec := make([]byte, (info.Size()+ps-1)/ps)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, fmt.Errorf("mincore %s: %w", path, e)
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n, nil
}

// dropPageCache writes back and evicts the cached pages of the files under
// dir (fsync, then POSIX_FADV_DONTNEED), without needing root as
// /proc/sys/vm/drop_caches does.
func dropPageCache(dir string) error {
	return eachFile(dir, "drop page cache", func(f *os.File) error {
		if err := f.Sync(); err != nil {
			return err
		}
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
}

// warmPageCache reads every file under dir once, so that its pages are in
// the OS page cache, as on a store that has been serving for a while.
func warmPageCache(dir string) error {
	return eachFile(dir, "warm page cache", func(f *os.File) error {
		_, err := io.Copy(io.Discard, f)
		return err
	})
}

// eachFile opens each regular file under dir and runs fn on it; an error
// names op and the file.
func eachFile(dir, op string, fn func(*os.File) error) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := fn(f); err != nil {
			return fmt.Errorf("%s of %s: %w", op, path, err)
		}
		return nil
	})
}

// --- output ---

// sizeLabel writes a power of ten as 10^k.
func sizeLabel(v float64) string {
	if e := math.Round(math.Log10(v)); math.Pow(10, e) == v {
		return fmt.Sprintf("10^%.0f", e)
	}
	return fmt.Sprintf("%g", v)
}

func (a ScaleApply) cell(f func(float64) float64) string {
	return fmt.Sprintf("%.1f / %.1f / %.1f / %.1f / %.1f / %.1f = %.1f", f(a.ValidateMs), f(a.TreesMs), f(a.FileMs), f(a.SQLiteMs), f(a.StateMs), f(a.RestMs), f(a.TotalMs))
}

func (m ScaleMeasure) read(method string) float64 { return m.reads(method).PerS }

func (m ScaleMeasure) reads(method string) ScaleReads {
	for _, rr := range m.Reads {
		if rr.Method == method {
			return rr
		}
	}
	return ScaleReads{}
}

func printScaleTable(res *ScaleResult) {
	fmt.Println("\n### scale: the store's costs against the size of its state (one `large` chain, seed 1)")
	fmt.Println()
	fmt.Printf("keys = nullifiers + notes + accounts. apply: mean ms per block of %d `large` then %d `standard` blocks made on a copy of the state (the generator's reads warm no cache of the store measured: a follower applies blocks made elsewhere), applied on top of it;"+
		" then the rest of %d large and %d standard, untimed, for the memory figure"+
		" (validate / trees / block file / sqlite / state database / rest = ApplyBlock's total; rest: what the stages of store.Report leave out). open s: cold (the files' page cache dropped first) / after a clean stop / after SIGKILL mid-apply."+
		" RSS after runtime.GC; page cache: of the store's files (mincore), after open what Open read; the files are then read once, so that reads and applies find the page cache warm. reads: calls/s from %d clients over gRPC on loopback, %s each, on the state before the blocks;"+
		" ×%d: ids per call. disk: du of the store directory.\n\n",
		min(res.LargeBlocks, scaleTimed["large"]), min(res.StandardBlocks, scaleTimed["standard"]), res.LargeBlocks, res.StandardBlocks, scaleReadClients, scaleReadFor, scaleBatch)
	fmt.Printf("| size | blocks | nullifiers | notes | keys | large ms/block (v / t / f / s / st / rest = total) | standard ms/block (v / t / f / s / st / rest = total) | open s (cold / clean / kill) " +
		"| RSS after open MB | RSS (live heap) after blocks MB | keys after blocks | page cache MB (open / blocks) " +
		"| block+proof /s | account /s | nullifiers ×16 /s | header+MMR /s | notes by id ×16 /s | sync notes /s | disk B/key |\n")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %s | %d | %d | %d | %d | %s | %s | %.2f / %.2f / %.2f | %.0f | %.0f (%.0f) | %d | %.0f / %.0f |",
			sizeLabel(r.Size), r.Blocks, r.Nullifiers, r.Notes, r.Keys, r.Large.cell(func(v float64) float64 { return v }), r.Standard.cell(func(v float64) float64 { return v }),
			r.OpenS, r.ReopenCleanS, r.ReopenKillS, r.RSSOpenMB, r.RSSBlocksMB, r.HeapBlocksMB, r.KeysAfter, r.CacheOpenMB, r.CacheBlocksMB)
		for _, m := range scaleReadMethods {
			fmt.Printf(" %.0f |", r.read(m))
		}
		fmt.Printf(" %.0f |\n", r.BytesPerKey)
	}
	if len(res.Rows) > 1 {
		printScaleRatios(res.Rows[0], res.Rows[len(res.Rows)-1])
	}
	// A page of notes by tag holds more notes on a longer chain (the tags
	// are a fixed space): per note is the like-for-like figure.
	fmt.Println("\nSyncNotes per note (one tag, from a random block; a page holds at most 100):")
	fmt.Println()
	fmt.Println("| size | calls/s | notes a call | notes/s |")
	fmt.Println("|---|---|---|---|")
	for _, r := range res.Rows {
		if rr := r.reads("SyncNotes"); rr.Calls > 0 {
			fmt.Printf("| %s | %.0f | %.1f | %.0f |\n", sizeLabel(r.Size), rr.PerS, float64(rr.Items)/float64(rr.Calls), rr.PerS*float64(rr.Items)/float64(rr.Calls))
		}
	}
	fmt.Println("\nTree records per block (the state database's writes and deletes; a record per band of --record-levels levels of each key's path below the levels the block's keys share):")
	fmt.Println()
	fmt.Println("| size | large: written / deleted | standard: written / deleted | state database MB written during the timed blocks: flushed / compacted |")
	fmt.Println("|---|---|---|---|")
	for _, r := range res.Rows {
		fmt.Printf("| %s | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f |\n", sizeLabel(r.Size), r.Large.Nodes, r.Large.Pruned, r.Standard.Nodes, r.Standard.Pruned, r.FlushedMB, r.CompactedMB)
	}
}

// printScaleRatios prints the row of ratios between the smallest and the
// largest state.
func printScaleRatios(lo, hi ScaleRow) {
	x := func(a, b float64) float64 {
		if a == 0 {
			return math.NaN()
		}
		return b / a
	}
	pair := func(a, b ScaleApply) string {
		return fmt.Sprintf("%.1f / %.1f / %.1f / %.1f / %.1f / %.1f = %.1f×", x(a.ValidateMs, b.ValidateMs), x(a.TreesMs, b.TreesMs), x(a.FileMs, b.FileMs), x(a.SQLiteMs, b.SQLiteMs), x(a.StateMs, b.StateMs), x(a.RestMs, b.RestMs), x(a.TotalMs, b.TotalMs))
	}
	fmt.Printf("| %s vs %s | %.1f× | %.1f× | %.1f× | %.1f× | %s | %s | %.1f / %.1f / %.1f× | %.1f× | %.1f× | %.1f× | %.1f / %.1f× |",
		sizeLabel(hi.Size), sizeLabel(lo.Size), x(float64(lo.Blocks), float64(hi.Blocks)), x(float64(lo.Nullifiers), float64(hi.Nullifiers)),
		x(float64(lo.Notes), float64(hi.Notes)), x(float64(lo.Keys), float64(hi.Keys)), pair(lo.Large, hi.Large), pair(lo.Standard, hi.Standard),
		x(lo.OpenS, hi.OpenS), x(lo.ReopenCleanS, hi.ReopenCleanS), x(lo.ReopenKillS, hi.ReopenKillS), x(lo.RSSOpenMB, hi.RSSOpenMB), x(lo.RSSBlocksMB, hi.RSSBlocksMB),
		x(float64(lo.KeysAfter), float64(hi.KeysAfter)), x(lo.CacheOpenMB, hi.CacheOpenMB), x(lo.CacheBlocksMB, hi.CacheBlocksMB))
	for _, m := range scaleReadMethods {
		fmt.Printf(" %.2f× |", x(lo.read(m), hi.read(m)))
	}
	fmt.Printf(" %.2f× |\n", x(lo.BytesPerKey, hi.BytesPerKey))
}

func printScaleBlocksTable(rows []ScaleBlocksRow) {
	fmt.Printf("\n### scale: the store's costs against the length of its chain (one `small` chain, seed %d)\n\n", scaleSmallSeed)
	fmt.Printf("Each state is blocks 0..N of `%s` (%d transactions a block), each block proven: what grows here is per block (the block index, the MMR, the segment files), not per key."+
		" open s: cold (the files' page cache dropped first) / after a clean stop / after SIGKILL mid-apply of `small` blocks. RSS after open and runtime.GC."+
		" reads: calls/s from %d clients over gRPC on loopback, %s each, random blocks over the whole chain (header+MMR: GetBlockHeaderByNumber with include_mmr_proof;"+
		" block+proof: GetBlockByNumber with include_proof). disk: du of the store directory over N.\n\n",
		scaleSmallChain.ChainID, scaleSmallTransactions(), scaleReadClients, scaleReadFor)
	fmt.Println("| blocks | open s (cold / clean / kill) | RSS MB | header+MMR /s | block+proof /s | disk B/block |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %.3f / %.3f / %.3f | %.0f | %.0f | %.0f | %.0f |\n", sizeLabel(float64(r.Blocks)),
			r.OpenS, r.ReopenCleanS, r.ReopenKillS, r.RSSOpenMB, r.read("GetBlockHeaderByNumber+MMR"), r.read("GetBlockByNumber+proof"), r.BytesPerBlock)
	}
	if len(rows) < 2 {
		return
	}
	lo, hi := rows[0], rows[len(rows)-1]
	x := func(a, b float64) float64 {
		if a == 0 {
			return math.NaN()
		}
		return b / a
	}
	fmt.Printf("| %s vs %s (%.0f×) | %.1f / %.1f / %.1f× | %.2f× | %.2f× | %.2f× | %.2f× |\n",
		sizeLabel(float64(hi.Blocks)), sizeLabel(float64(lo.Blocks)), x(float64(lo.Blocks), float64(hi.Blocks)),
		x(lo.OpenS, hi.OpenS), x(lo.ReopenCleanS, hi.ReopenCleanS), x(lo.ReopenKillS, hi.ReopenKillS), x(lo.RSSOpenMB, hi.RSSOpenMB),
		x(lo.read("GetBlockHeaderByNumber+MMR"), hi.read("GetBlockHeaderByNumber+MMR")), x(lo.read("GetBlockByNumber+proof"), hi.read("GetBlockByNumber+proof")),
		x(lo.BytesPerBlock, hi.BytesPerBlock))
}

func scaleSmallTransactions() int {
	p, _ := workload.ProfileByName(scaleSmallChain.Profile)
	return p.Transactions
}

// writeScalePlots draws apply ms/block and open s against keys (log x).
func writeScalePlots(dir string, res *ScaleResult) error {
	if len(res.Rows) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lo, hi := math.Inf(1), 0.0
	for _, r := range res.Rows {
		lo, hi = min(lo, float64(r.Keys)), max(hi, float64(r.Keys))
	}
	type series struct {
		name string
		y    func(ScaleRow) float64
	}
	draw := func(file, title, ylabel string, ss []series) error {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "keys (nullifiers + notes + accounts)"
		p.Y.Label.Text = ylabel
		for i, s := range ss {
			xys := make(plotter.XYs, len(res.Rows))
			for k, r := range res.Rows {
				xys[k] = plotter.XY{X: float64(r.Keys), Y: s.y(r)}
			}
			l, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			l.Color, pts.Color = colors[i%len(colors)], colors[i%len(colors)]
			l.Width = vg.Points(2)
			p.Add(l, pts)
			p.Legend.Add(s.name, l, pts)
		}
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Min, p.X.Max = lo/2, hi*2
		p.Y.Min = 0
		p.Legend.Top = true
		p.Legend.Left = true
		return p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, file))
	}
	if err := draw("scale-apply.png", "apply cost against state size", "ms per block", []series{
		{fmt.Sprintf("large (mean of %d blocks)", min(res.LargeBlocks, scaleTimed["large"])), func(r ScaleRow) float64 { return r.Large.TotalMs }},
		{fmt.Sprintf("standard (mean of %d blocks)", min(res.StandardBlocks, scaleTimed["standard"])), func(r ScaleRow) float64 { return r.Standard.TotalMs }},
	}); err != nil {
		return err
	}
	return draw("scale-open.png", "store.Open time against state size", "s", []series{
		{"cold (page cache dropped)", func(r ScaleRow) float64 { return r.OpenS }},
		{"after a clean stop", func(r ScaleRow) float64 { return r.ReopenCleanS }},
		{"after SIGKILL mid-apply", func(r ScaleRow) float64 { return r.ReopenKillS }},
	})
}
