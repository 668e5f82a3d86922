package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"storesync/merkle"
)

// The state database (Pebble, under state/) holds what is keyed by hashes:
// the nodes of the account and nullifier trees and the note-ID index. Keys
// that are hashes land anywhere in a B-tree, so in SQLite every one of them
// would dirty a page of its own at each commit; an LSM appends them.
//
// It is written after the SQLite commit of the blocks it belongs to, one
// batch per group of blocks committed together, to its memtable only: the
// note index entries at once, the trees' new nodes and the tip record once
// every few blocks (stateDeferBlocks; until then they are in the published
// snapshot's memory). SQLite's tips row stays the only commit point, and
// the database has no log of its own (a failed log write is fatal to
// Pebble, where a store must refuse the write and go on). Its memtable is
// flushed every stateFlushBytes or stateFlushBlocks; its tip
// record says which block the flushed trees are at, and Open brings it to
// SQLite's committed tip by replaying the blocks past it from their files
// (the batches a crash took: at most about two flush intervals) or by going
// back to an earlier version it still holds (see stateRetainBlocks).
//
// Keys:
//
//	"t"               the tip record: block, next node id, both tree roots
//	"v" block (u64)   the tree roots at that block, for the last versions
//	"s" block (u64)   ids of the nodes that block's trees replaced
//	"n" id (u64)      a tree node record (merkle.Persist)
//	"i" note id (32)  the note's position in the notes table
//	"g" tag (u32) pos (u64)  empty: a note with that tag is at that position
//
// Node records are written once under a new id and deleted only when no
// retained version uses them, so a reader holding an older snapshot reads
// its own version while the writer moves on.
type stateDB struct {
	dir string // the Pebble directory
	db  *pebble.DB
	fs  *trackingFS
	src *merkle.NodeSource

	// The writer's own, guarded by the store's mutex.
	tip      uint64 // block the stored trees are at
	nextNode uint64 // next node id to allocate
	// retained lists versions whose replaced nodes are still on disk,
	// oldest first, with when they were written.
	retained []retainedVersion
	// What the last batch wrote and deleted of the trees (Report).
	lastNodes, lastPruned int
	// Since the last flush was asked for.
	unflushedBytes  int
	unflushedBlocks int
	// deferred counts the committed blocks past tip whose note index
	// entries are in the database but whose tree nodes are only in memory,
	// in the published snapshot's trees (see stateDeferBlocks).
	deferred deferral

	// fault is the last error of a background flush or compaction, cleared
	// by the next flush that succeeds; stalled is set while Pebble holds
	// writes back. Either way the store refuses blocks (StorageError)
	// rather than let batches pile up in memory.
	fault   atomic.Pointer[error]
	stalled atomic.Bool
	// flushing is closed when the last flush asked for is done (nil: none
	// asked for yet). Guarded by the store's mutex.
	flushing <-chan struct{}
	// faulted is closed at the first fault: a flush on a disk refusing
	// writes never ends, and Close waits no longer than it takes to see
	// the first failure.
	faulted   chan struct{}
	faultOnce sync.Once
}

type retainedVersion struct {
	block uint64
	at    time.Time
}

// stateRetainBlocks and stateRetainAge: the nodes a block's trees replaced
// are deleted once both that many blocks and that much time have passed. A
// reader works on the snapshot it took for the length of one request, far
// shorter; one older than both gets ErrSnapshotGone, never a wrong answer.
// The age is short because during a catch-up it is the bound that holds
// (10 s was 200 large blocks): every node replaced in that time stays alive
// long enough to be compacted down the LSM before its deletion reaches it.
// Variables so that tests can make pruning happen at once.
var (
	stateRetainBlocks = 32
	stateRetainAge    = 1 * time.Second
)

// stateDeferBlocks, stateDeferBytes and stateDeferAge bound how long the
// trees' new nodes stay in memory only, in the published snapshot, before
// they are written: a block's batch then holds only its note index entries,
// and one batch writes the trees of every block since the last. A node that
// a later block replaces within that span is never written (nor pruned):
// the upper levels, which every block rewrites, are written once a span
// instead of once a block. What a crash takes is replayed from the block
// files at Open, as for an unflushed memtable; the age bound keeps it to
// about that much apply work, the bytes bound keeps the nodes held in
// memory to a few MB. 512 blocks: small blocks (7.6 KB) meet the bytes
// bound about there, and groups of 32 of them applied 25-29% faster than
// with 64 (fewer upper records written, less to compact). Variables so
// that tests can write every block.
var (
	stateDeferBlocks = 512
	stateDeferBytes  = 4 << 20
	stateDeferAge    = 500 * time.Millisecond
)

// deferral counts committed blocks whose trees are in memory only: how
// many, their encoded bytes, since when the first of them committed.
type deferral struct {
	blocks, bytes int
	since         time.Time
}

// due reports whether the trees must be written now, with blocks more
// committed (bytes long) on top of those d counts.
func (d deferral) due(blocks, bytes int, now time.Time) bool {
	if d.blocks == 0 {
		return blocks >= stateDeferBlocks || bytes >= stateDeferBytes
	}
	return d.blocks+blocks >= stateDeferBlocks || d.bytes+bytes >= stateDeferBytes || now.Sub(d.since) >= stateDeferAge
}

// add counts blocks more committed (bytes long) at now.
func (d deferral) add(blocks, bytes int, now time.Time) deferral {
	if d.blocks == 0 {
		d.since = now
	}
	d.blocks += blocks
	d.bytes += bytes
	return d
}

const (
	// stateFlushBytes and stateFlushBlocks bound what a crash takes from
	// the state database, and so what Open replays: a few large blocks or
	// a few hundred small ones, well under a second of work.
	stateFlushBytes  = 8 << 20
	stateFlushBlocks = 256
	// stateCloseWait is how long Close waits for the last flush; past it
	// (a disk refusing writes), the next Open replays instead.
	stateCloseWait = 5 * time.Second
	// stateMemTableSize holds the batches of one flush interval and the
	// largest block's; stateMemTables is how many Pebble may hold (the
	// mutable one and one being flushed) plus one it keeps for reuse.
	stateMemTableSize = 2 * stateFlushBytes
	stateMemTables    = 3
	// stateRetryPause spaces Pebble's retries of a failed flush.
	stateRetryPause = 100 * time.Millisecond
)

func tipKey() []byte { return []byte("t") }

func u64Key(prefix byte, n uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

func nodeKey(id uint64) []byte      { return u64Key('n', id) }
func rootsKey(n uint64) []byte      { return u64Key('v', n) }
func staleKey(n uint64) []byte      { return u64Key('s', n) }
func noteKey(id merkle.Hash) []byte { return append([]byte{'i'}, id[:]...) }

func tagKey(tag uint32, pos uint64) []byte {
	k := make([]byte, 13)
	k[0] = 'g'
	binary.BigEndian.PutUint32(k[1:], tag)
	binary.BigEndian.PutUint64(k[5:], pos)
	return k
}

// Options sets the sizes of the store's caches: with the fetch window and a
// fixed overhead they bound its memory, whatever the size of the state.
type Options struct {
	// NodeCacheBytes bounds the decoded tree nodes kept in memory below
	// the pinned levels.
	NodeCacheBytes int64
	// PinnedLevels is how many levels of each tree stay decoded in memory
	// once read (merkle.PinnedBytes bounds what they hold): the levels on
	// nearly every path, where a cache would cost an entry per node.
	PinnedLevels int
	// RecordLevels is how many levels of a tree one stored record spans
	// (merkle.NodeSource.SetRecordLevels): more levels, fewer and larger
	// records to write and read per path.
	RecordLevels int
	// StateCacheBytes is the state database's block cache.
	StateCacheBytes int64
	// SQLiteCacheBytes is SQLite's page cache (per connection).
	SQLiteCacheBytes int64
}

// DefaultOptions are the sizes a store opens with unless told otherwise.
var DefaultOptions = Options{
	NodeCacheBytes:   256 << 20,
	PinnedLevels:     merkle.DefaultPinLevels,
	RecordLevels:     merkle.DefaultRecordLevels,
	StateCacheBytes:  64 << 20,
	SQLiteCacheBytes: 64 << 20,
}

// memoryOverhead is what a store's process holds on the Go heap beside its
// node cache, its pinned levels and its fetch window: one block's apply,
// the read server's buffers, the runtime, gRPC, the actors.
const memoryOverhead = 256 << 20

// MemoryLimit is the Go heap limit that keeps a process holding a store
// with these caches, and a fetch window of windowBytes, within what they
// are configured to: twice the node cache (the collector's headroom for
// what its evictions leave behind), the pinned levels of both trees at
// their bound (they are replaced a path at a time, not churned), the window
// and a fixed overhead. The state and SQLite caches are outside the Go heap
// and come on top; so does the OS page cache.
func MemoryLimit(o Options, windowBytes int64) int64 {
	o = o.withDefaults()
	return 2*o.NodeCacheBytes + 2*merkle.PinnedBytes(o.PinnedLevels) + max(windowBytes, 0) + memoryOverhead
}

func (o Options) withDefaults() Options {
	if o.NodeCacheBytes <= 0 {
		o.NodeCacheBytes = DefaultOptions.NodeCacheBytes
	}
	if o.PinnedLevels <= 0 {
		o.PinnedLevels = DefaultOptions.PinnedLevels
	}
	if o.RecordLevels <= 0 {
		o.RecordLevels = DefaultOptions.RecordLevels
	}
	if o.StateCacheBytes <= 0 {
		o.StateCacheBytes = DefaultOptions.StateCacheBytes
	}
	if o.SQLiteCacheBytes <= 0 {
		o.SQLiteCacheBytes = DefaultOptions.SQLiteCacheBytes
	}
	return o
}

func openStateDB(dir string, o Options) (*stateDB, error) {
	// Pebble reserves each memtable's size out of the block cache (its live
	// ones and one kept for reuse): sized at StateCacheBytes alone, a cache
	// left nothing for blocks once the memtables had grown, and every read
	// of a node below the node cache went to the files.
	cache := pebble.NewCache(o.StateCacheBytes + stateMemTables*stateMemTableSize)
	defer cache.Unref()
	s := &stateDB{dir: filepath.Join(dir, "state"), fs: newTrackingFS(), faulted: make(chan struct{})}
	opts := &pebble.Options{
		FS:    s.fs,
		Cache: cache,
		// Flushes come from stateFlushBytes before a memtable fills.
		MemTableSize:                stateMemTableSize,
		MemTableStopWritesThreshold: stateMemTables - 1,
		DisableWAL:                  true,
		Logger:                      quietPebble{},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				s.fault.Store(&err)
				s.faultOnce.Do(func() { close(s.faulted) })
				// Pebble retries a failed flush at once, in a loop; on a
				// disk refusing writes that would spin a core. This runs
				// on the flush's goroutine, so the pause spaces the tries.
				time.Sleep(stateRetryPause)
			},
			FlushEnd: func(info pebble.FlushInfo) {
				if info.Err == nil {
					s.fault.Store(nil)
				}
			},
			CompactionEnd: func(info pebble.CompactionInfo) {
				if info.Err == nil {
					s.fault.Store(nil)
				}
			},
			WriteStallBegin: func(pebble.WriteStallBeginInfo) { s.stalled.Store(true) },
			WriteStallEnd:   func() { s.stalled.Store(false) },
		},
	}
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// Hashes do not compress: compressing them costs every flush,
	// compaction and read for nothing.
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	opts.EnsureDefaults()
	db, err := pebble.Open(s.dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open state database: %w", err)
	}
	s.db = db
	s.src = merkle.NewNodeSource(s, o.NodeCacheBytes, o.PinnedLevels)
	s.src.SetRecordLevels(o.RecordLevels)
	return s, nil
}

// refusing returns why the state database cannot take batches now, or nil.
// While the store refuses blocks nothing makes Pebble write, so nothing
// of Pebble's would clear a fault: a small file written and synced beside
// them tells when the disk takes writes again.
func (s *stateDB) refusing() error {
	if p := s.fault.Load(); p != nil {
		if perr := s.probe(); perr != nil {
			return fmt.Errorf("state database cannot write: %w", *p)
		}
		s.fault.CompareAndSwap(p, nil)
	}
	if s.stalled.Load() {
		return errors.New("state database cannot write: its flushes are behind (a slow or full disk)")
	}
	return nil
}

// flushPending reports whether the last flush asked for has not reached
// the disk yet. Asking for another then would queue a memtable more, and
// Pebble holds writes back while too many wait (on a disk refusing writes,
// for ever). Pebble's own count of memtables does not tell: a small
// memtable rotated out when a batch outgrew it waits in the queue, unflushed,
// until enough bytes follow it.
func (s *stateDB) flushPending() bool {
	if s.flushing == nil {
		return false
	}
	select {
	case <-s.flushing:
		return false
	default:
		return true
	}
}

// flush asks for the memtable to be flushed in the background.
func (s *stateDB) flush() error {
	done, err := s.db.AsyncFlush()
	if err != nil {
		return err
	}
	s.flushing = done
	return nil
}

// probe writes, syncs and removes a small file beside the state directory.
func (s *stateDB) probe() error {
	path := filepath.Join(filepath.Dir(s.dir), "state.probe")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("storesync: the disk takes writes\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	return err
}

// quietPebble drops Pebble's informational lines; its errors reach us
// through the event listener. Fatalf is Pebble's answer to a failed
// manifest write, which it cannot undo: the process stops, and Open
// recovers as after a crash.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("state database: "+format, args...))
}

// ReadNode reads a tree node record. thread-safe.
func (s *stateDB) ReadNode(id uint64) ([]byte, error) {
	v, closer, err := s.db.Get(nodeKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: tree node %d is not in the state database (deleted with versions older than the last %d blocks and %s, or damage)", ErrSnapshotGone, id, stateRetainBlocks, stateRetainAge)
	}
	if err != nil {
		return nil, err
	}
	rec := append([]byte(nil), v...)
	return rec, closer.Close()
}

// tipRecord is what "t" and the "v" keys hold.
type tipRecord struct {
	block      uint64
	nextNode   uint64
	accounts   merkle.PersistedSMT
	nullifiers merkle.PersistedSMT
}

func appendTree(out []byte, p merkle.PersistedSMT) []byte {
	out = append(out, p.Hash[:]...)
	out = binary.AppendUvarint(out, uint64(p.Size))
	out = binary.AppendUvarint(out, uint64(len(p.Root)))
	return append(out, p.Root...)
}

func (r tipRecord) encode() []byte {
	out := binary.BigEndian.AppendUint64(nil, r.block)
	out = binary.BigEndian.AppendUint64(out, r.nextNode)
	out = appendTree(out, r.accounts)
	return appendTree(out, r.nullifiers)
}

func readTree(b []byte) (merkle.PersistedSMT, []byte, error) {
	var p merkle.PersistedSMT
	if len(b) < merkle.Size {
		return p, nil, errors.New("tree root truncated")
	}
	p.Hash, b = merkle.Hash(b), b[merkle.Size:]
	size, k := binary.Uvarint(b)
	if k <= 0 {
		return p, nil, errors.New("tree size malformed")
	}
	p.Size, b = int(size), b[k:]
	l, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < l {
		return p, nil, errors.New("tree root reference malformed")
	}
	p.Root, b = append([]byte(nil), b[k:k+int(l)]...), b[k+int(l):]
	return p, b, nil
}

func decodeTip(b []byte) (tipRecord, error) {
	var r tipRecord
	if len(b) < 16 {
		return r, fmt.Errorf("%d bytes", len(b))
	}
	r.block, r.nextNode = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	var err error
	if r.accounts, b, err = readTree(b[16:]); err != nil {
		return r, fmt.Errorf("accounts: %w", err)
	}
	if r.nullifiers, b, err = readTree(b); err != nil {
		return r, fmt.Errorf("nullifiers: %w", err)
	}
	if len(b) != 0 {
		return r, fmt.Errorf("%d trailing bytes", len(b))
	}
	return r, nil
}

// get reads a key; ok is false if it is absent.
func (s *stateDB) get(key []byte) (_ []byte, ok bool, _ error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

// readTip returns the stored tip record, or ok false for an empty database.
func (s *stateDB) readTip() (tipRecord, bool, error) {
	v, ok, err := s.get(tipKey())
	if err != nil || !ok {
		return tipRecord{}, false, err
	}
	r, err := decodeTip(v)
	if err != nil {
		return r, false, fmt.Errorf("%w: state database tip record: %w", ErrDamaged, err)
	}
	return r, true, nil
}

// readRoots returns the tree roots the database kept for block n.
func (s *stateDB) readRoots(n uint64) (tipRecord, bool, error) {
	v, ok, err := s.get(rootsKey(n))
	if err != nil || !ok {
		return tipRecord{}, false, err
	}
	r, err := decodeTip(v)
	if err != nil {
		return r, false, fmt.Errorf("%w: state database roots of block %d: %w", ErrDamaged, n, err)
	}
	return r, true, nil
}

// loadRetained reads which versions still have replaced nodes on disk, so
// that pruning goes on where it stopped. Versions past tip are dropped: they
// belong to blocks that were never committed (see rollBack).
func (s *stateDB) loadRetained() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("s"), UpperBound: []byte("t")})
	if err != nil {
		return fmt.Errorf("read state database: %w", err)
	}
	defer it.Close()
	s.retained = s.retained[:0]
	for it.First(); it.Valid(); it.Next() {
		if len(it.Key()) != 9 {
			continue
		}
		// Found at open: old enough by time, pruned by count alone.
		s.retained = append(s.retained, retainedVersion{block: binary.BigEndian.Uint64(it.Key()[1:])})
	}
	return it.Error()
}

// stateBatch is one block's writes to the state database.
type stateBatch struct {
	s *stateDB
	b *pebble.Batch
	// nodes and pruned count the tree nodes the batch writes and deletes.
	nodes, pruned int
}

func (s *stateDB) newBatch() *stateBatch { return &stateBatch{s: s, b: s.db.NewBatch()} }

func (sb *stateBatch) alloc() uint64 {
	id := sb.s.nextNode
	sb.s.nextNode++
	return id
}

func (sb *stateBatch) putNode(id uint64, rec []byte) error {
	sb.nodes++
	return sb.b.Set(nodeKey(id), rec, nil)
}

// putNote indexes a note by its ID and by its tag.
func (sb *stateBatch) putNote(id merkle.Hash, tag uint32, pos uint64) error {
	if err := sb.b.Set(noteKey(id), binary.BigEndian.AppendUint64(nil, pos), nil); err != nil {
		return err
	}
	return sb.b.Set(tagKey(tag, pos), nil, nil)
}

// persistTrees writes the unpersisted nodes of both trees and returns the
// trees reading from the database, and the tip record naming them.
func (sb *stateBatch) persistTrees(n uint64, accounts, nullifiers *merkle.SMT) (*merkle.SMT, *merkle.SMT, tipRecord, error) {
	acc, pa, staleA, err := accounts.Persist(sb.s.src, sb.alloc, sb.putNode)
	if err != nil {
		return nil, nil, tipRecord{}, fmt.Errorf("persist account tree: %w", err)
	}
	nul, pn, staleN, err := nullifiers.Persist(sb.s.src, sb.alloc, sb.putNode)
	if err != nil {
		return nil, nil, tipRecord{}, fmt.Errorf("persist nullifier tree: %w", err)
	}
	rec := tipRecord{block: n, accounts: pa, nullifiers: pn}
	if stale := append(staleA, staleN...); len(stale) > 0 {
		var list []byte
		for _, id := range stale {
			list = binary.AppendUvarint(list, id)
		}
		if err := sb.b.Set(staleKey(n), list, nil); err != nil {
			return nil, nil, tipRecord{}, err
		}
	}
	return acc, nul, rec, nil
}

// commit writes the batch with the tip record and prunes what the retained
// versions no longer need; it asks for a flush every stateFlushBytes or
// stateFlushBlocks.
func (sb *stateBatch) commit(rec tipRecord, now time.Time) error {
	s := sb.s
	defer sb.b.Close()
	rec.nextNode = s.nextNode
	enc := rec.encode()
	if err := sb.b.Set(rootsKey(rec.block), enc, nil); err != nil {
		return err
	}
	if err := sb.b.Set(tipKey(), enc, nil); err != nil {
		return err
	}
	// Prune, in this batch, what the retained versions no longer need;
	// s.retained changes only once the batch is in.
	retained := append(s.retained, retainedVersion{block: rec.block, at: now})
	// A few versions a batch at most, so that a backlog (after a long
	// replay) is worked off over several blocks rather than in one batch.
	for pruned := 0; pruned < 4 && len(retained) > stateRetainBlocks && now.Sub(retained[0].at) >= stateRetainAge; pruned++ {
		n, err := s.prune(sb.b, retained[0].block)
		if err != nil {
			return err
		}
		sb.pruned += n
		retained = retained[1:]
	}
	if err := s.refusing(); err != nil {
		return err
	}
	if err := sb.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write state database: %w", err)
	}
	s.retained = retained
	s.tip = rec.block
	s.deferred = deferral{}
	s.lastNodes, s.lastPruned = sb.nodes, sb.pruned
	s.written(len(sb.b.Repr()))
	return nil
}

// commitNotes writes a batch of note index entries alone: the trees stay
// deferred and the tip record where it is.
func (sb *stateBatch) commitNotes() error {
	s := sb.s
	defer sb.b.Close()
	if err := s.refusing(); err != nil {
		return err
	}
	if err := sb.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write state database: %w", err)
	}
	s.lastNodes, s.lastPruned = 0, 0
	s.written(len(sb.b.Repr()))
	return nil
}

// written counts a batch towards the next flush, and asks for it when due.
func (s *stateDB) written(bytes int) {
	s.unflushedBytes += bytes
	s.unflushedBlocks++
	if (s.unflushedBytes >= stateFlushBytes || s.unflushedBlocks >= stateFlushBlocks) && !s.flushPending() {
		// In the background: the writer does not wait for the disk. A
		// flush that cannot start is asked for again at the next batch.
		if s.flush() == nil {
			s.unflushedBytes, s.unflushedBlocks = 0, 0
		}
	}
}

// prune deletes, in batch b, the nodes block n's trees replaced and its
// retained roots: no retained version uses them any more. It returns how
// many nodes it deletes.
func (s *stateDB) prune(b *pebble.Batch, n uint64) (int, error) {
	list, ok, err := s.get(staleKey(n))
	if err != nil {
		return 0, fmt.Errorf("prune state of block %d: %w", n, err)
	}
	deleted := 0
	for ok && len(list) > 0 {
		id, k := binary.Uvarint(list)
		if k <= 0 {
			return 0, fmt.Errorf("%w: state database: stale list of block %d is malformed", ErrDamaged, n)
		}
		list = list[k:]
		// A node is set once, under an id never used again, and deleted
		// once, here: a single delete meets its set in the first flush or
		// compaction holding both and both vanish, where a tombstone would
		// be rewritten level by level to the bottom of the LSM (at 10^6
		// keys compactions took 40% of the CPU of an apply, most of it
		// carrying pruned nodes and their tombstones).
		if err := b.SingleDelete(nodeKey(id), nil); err != nil {
			return 0, err
		}
		deleted++
	}
	if err := b.Delete(staleKey(n), nil); err != nil {
		return 0, err
	}
	return deleted, b.Delete(rootsKey(n), nil)
}

// rollBack makes the database's tip block n, an earlier version it still
// holds. Its later versions belong to blocks SQLite does not hold committed
// (the state batch is written after the SQLite commit, so only a commit that
// reported success and was then lost can leave them), so their stale lists
// are dropped unapplied (the nodes they name are still used by n), and the
// nodes they wrote are left behind, unreachable.
func (s *stateDB) rollBack(n uint64, rec tipRecord, nextNode uint64) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(staleKey(n+1), staleKey(^uint64(0)), nil); err != nil {
		return err
	}
	if err := b.DeleteRange(rootsKey(n+1), rootsKey(^uint64(0)), nil); err != nil {
		return err
	}
	rec.nextNode = nextNode
	if err := b.Set(tipKey(), rec.encode(), nil); err != nil {
		return err
	}
	// Not flushed here: should it be lost, the next Open rolls back again.
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("roll state database back to block %d: %w", n, err)
	}
	s.tip, s.nextNode = n, nextNode
	return nil
}

// notePos returns the position stored for a note ID, if any.
func (s *stateDB) notePos(id merkle.Hash) (uint64, bool, error) {
	v, ok, err := s.get(noteKey(id))
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: state database: note %s index entry is %d bytes", ErrDamaged, id.Short(), len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// tagPositions returns, in order, the first limit positions in [from, end)
// that the tag index holds for tag.
func (s *stateDB) tagPositions(tag uint32, from, end uint64, limit int) ([]uint64, error) {
	if from >= end || limit <= 0 {
		return nil, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: tagKey(tag, from), UpperBound: tagKey(tag, end)})
	if err != nil {
		return nil, fmt.Errorf("state database: notes of tag %d: %w", tag, err)
	}
	var out []uint64
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != 13 {
			it.Close()
			return nil, fmt.Errorf("%w: state database: tag index key of %d bytes", ErrDamaged, len(k))
		}
		out = append(out, binary.BigEndian.Uint64(k[5:]))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("state database: notes of tag %d: %w", tag, err)
	}
	return out, nil
}

func (s *stateDB) close() error {
	if s.db == nil {
		return nil
	}
	// The memtable reaches the disk before the files close, unless the
	// disk refuses it: then the next Open replays those blocks, so a
	// failure here loses nothing and is not the caller's to handle.
	var err error
	wait := func(done <-chan struct{}, timeout <-chan time.Time) bool {
		select {
		case <-done:
			return true
		case <-s.faulted:
		case <-timeout:
		}
		return false
	}
	timeout := time.After(stateCloseWait)
	if s.fault.Load() == nil && (s.flushing == nil || wait(s.flushing, timeout)) {
		if ferr := s.flush(); ferr != nil {
			err = fmt.Errorf("flush state database: %w", ferr)
		} else {
			wait(s.flushing, timeout)
		}
	}
	cerr := s.db.Close()
	s.fs.closeLeft()
	if _, refused := storageReason(cerr); s.fault.Load() != nil || refused {
		// What did not reach the disk is replayed by the next Open.
		return nil
	}
	return errors.Join(err, cerr)
}

// Compacting reports the state database's compaction debt (bytes it
// estimates it must compact to bring the LSM's shape back) and how many
// compactions run now. thread-safe.
func (s *Store) Compacting() (debtBytes uint64, running int64) {
	m := s.state.db.Metrics()
	return m.Compact.EstimatedDebt, m.Compact.NumInProgress
}

// StateWrites returns the bytes the state database has written to its
// files since Open: by memtable flushes and by compactions (what grows with
// the LSM's depth, and so with the state). thread-safe.
func (s *Store) StateWrites() (flushed, compacted uint64) {
	m := s.state.db.Metrics()
	return m.Levels[0].TableBytesFlushed, m.Total().TableBytesCompacted
}
