// Package store is the block store that primary and followers run alike. It
// keeps three media:
//
//   - block files: the encoded bytes of every block and proof, in
//     append-only segment files, written and fdatasync'ed before the block is
//     committed;
//   - an SQLite database (WAL mode, synchronous=FULL): headers, notes,
//     proofs, the nodes of the MMR of block commitments and the tips;
//   - a state database (Pebble): the nodes of the account and nullifier
//     sparse Merkle trees and the note-ID index, written after each SQLite
//     commit (see stateDB).
//
// ApplyBlock checks everything before it changes anything, then writes the
// block file, then commits one SQLite transaction (the commit point), then
// writes the state batch, then publishes the new snapshot. A crash anywhere
// leaves a store that Open brings back to the last committed block by
// itself, with work bounded by what was in flight: block file bytes past it
// are cut, state batches it lacks are replayed from the block files.
//
// Memory does not grow with the state: trees live on disk behind a cache
// bounded in bytes (Options), the MMR in SQLite behind its peaks.
//
// One writer at a time; any number of readers. Readers work on a Snapshot, an
// immutable view of one tip across all three media.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"storesync/block"
	"storesync/genesis"
	"storesync/merkle"
	"storesync/state"
)

// Store is an open block store.
type Store struct {
	// immutable after Open
	dir      string
	genesis  *genesis.File
	rules    state.Rules
	verifier block.Verifier
	opts     Options
	db       *sql.DB
	notesAt  *sql.Stmt // the notes at a JSON array of positions
	mmr      mmrNodes
	blocks   *segments
	proofs   *segments
	state    *stateDB
	// Where recent blocks and proofs lie in their files (see locIndex).
	blockLocs, proofLocs *locIndex

	mu     sync.Mutex // the single writer; guards w, closed and state's writer fields
	w      *writer
	closed bool
	// stageMu serialises Stage, and is taken before mu; tail is the group
	// staged last (nil: none yet), stageClosed set by Close. Guarded by
	// stageMu (Stage does not take mu while a commit may hold it).
	stageMu     sync.Mutex
	tail        *Staged
	stageClosed bool

	// stopPreload asks the read-in of the trees' pinned tops after Open to
	// end; preloaded is closed when it has.
	stopPreload atomic.Bool
	preloaded   chan struct{}

	// replayed is how many blocks the last Open replayed into the state
	// database (set by Open, then read only).
	replayed int

	snap    atomic.Pointer[Snapshot]      // what readers see
	changed atomic.Pointer[chan struct{}] // closed and replaced at each publish
}

// Snapshot is one consistent view of the store: everything a reader sees
// through it belongs to the same committed and proven tips, whatever the
// writer does meanwhile.
type Snapshot struct {
	st       *Store
	State    *state.State // chain state at the committed tip
	Proven   uint64
	tipLoc   loc // where the committed tip's block lies in its file
	proofLoc loc // where the proven tip's proof lies in its file (if any)
	// CommittedAt and ProvenAt: when this store first published its
	// committed tip and its proven tip, so readers could see them (zero:
	// at Open). The instant a block or proof became readable here, with no
	// waker's scheduling delay in it.
	CommittedAt, ProvenAt time.Time
	// ApplyStart: when the ApplyBlock call that made the committed tip
	// began (zero: at Open); CommittedAt minus it is that block's whole
	// apply here, the wait for the writer's lock included.
	ApplyStart time.Time
}

// Committed returns the committed tip.
func (s *Snapshot) Committed() uint64 { return s.State.Header.Number }

// Open opens the store in dir with DefaultOptions, creating it from g if dir
// holds none. It checks that an existing store belongs to g's chain and
// repairs what a crash may have left.
func Open(dir string, g *genesis.File) (*Store, error) { return OpenWith(dir, g, DefaultOptions) }

// OpenWith is Open with the given cache sizes (zero fields take
// DefaultOptions' values).
func OpenWith(dir string, g *genesis.File, o Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{dir: dir, genesis: g, rules: state.RulesOf(g), verifier: block.NewMemoVerifier(g.Verifier(), proofMemoSlots), opts: o.withDefaults()}
	s.blockLocs, s.proofLocs = newLocIndex("block", "blocks", s.blockLoc), newLocIndex("proof", "proofs", s.proofLoc)
	if err := s.open(); err != nil {
		s.closeAll()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s.preloaded = make(chan struct{})
	go s.preload()
	return s, nil
}

// preload reads the pinned tops of the opened trees in the background: a
// restarted store would otherwise pay a state database read on first use
// of each of those nodes, on nearly every path of its first blocks (up to
// 2^PinnedLevels a tree). A failed read is not reported here: the walk stops, and
// the read fails again where it has a caller.
func (s *Store) preload() {
	defer close(s.preloaded)
	st := s.snap.Load().State
	for _, t := range []*merkle.SMT{st.Accounts, st.Nullifiers} {
		if t.LoadTop(s.stopPreload.Load) != nil || s.stopPreload.Load() {
			return
		}
	}
}

// Preloaded is closed once the trees' pinned tops are in memory after Open
// (or the store closed first).
func (s *Store) Preloaded() <-chan struct{} { return s.preloaded }

func (s *Store) open() error {
	var err error
	if s.db, err = openDB(s.dir, s.opts.SQLiteCacheBytes); err != nil {
		return err
	}
	s.mmr = mmrNodes{db: s.db}
	// One statement for any number of positions: an IN list of its own
	// length each time would be parsed and planned at every call.
	if s.notesAt, err = s.db.Prepare(`SELECT ` + noteColumns + ` FROM notes WHERE pos IN (SELECT value FROM json_each(?))`); err != nil {
		return fmt.Errorf("prepare the notes query: %w", err)
	}
	if s.blocks, err = openSegments(filepath.Join(s.dir, "blocks"), "block"); err != nil {
		return err
	}
	if s.proofs, err = openSegments(filepath.Join(s.dir, "proofs"), "proof"); err != nil {
		return err
	}
	if s.state, err = openStateDB(s.dir, s.opts); err != nil {
		return err
	}
	ctx := context.Background()
	if s.w, err = newWriter(ctx, s.db); err != nil {
		return err
	}
	fresh, err := s.checkMeta(ctx)
	if err != nil {
		return err
	}
	if fresh {
		if err := s.initGenesis(ctx); err != nil {
			return err
		}
	}
	return s.load(ctx)
}

// checkMeta checks the database belongs to this chain; fresh reports an
// empty database.
func (s *Store) checkMeta(ctx context.Context) (fresh bool, err error) {
	meta := map[string]string{}
	rows, err := s.db.QueryContext(ctx, `SELECT key, value FROM meta`)
	if err != nil {
		return false, fmt.Errorf("read meta: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return false, fmt.Errorf("read meta: %w", err)
		}
		meta[k] = v
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read meta: %w", err)
	}
	if len(meta) == 0 {
		return true, nil
	}
	if v := meta["schema_version"]; v != schemaVersion {
		return false, fmt.Errorf("database schema version %q, this build reads %q (a follower's store can be deleted and synced again)", v, schemaVersion)
	}
	if c := meta["genesis_commitment"]; c != s.genesis.Commitment.String() {
		return false, fmt.Errorf("%w: data directory holds chain %q with genesis %s, the genesis file is chain %q with %s",
			ErrGenesis, meta["chain_id"], c, s.genesis.ChainID, s.genesis.Commitment)
	}
	return false, nil
}

// initGenesis writes the genesis block like any other: file first, then one
// transaction that also writes the meta rows, so a crash here leaves either
// an empty store or a complete one. Its trees reach the state database
// when load finds the database behind.
func (s *Store) initGenesis(ctx context.Context) error {
	if err := s.blocks.recover(0, 0, false, nil); err != nil {
		return err
	}
	if err := s.proofs.recover(1, 0, false, nil); err != nil {
		return err
	}
	b := s.genesis.Block()
	st := state.Genesis(s.genesis)
	data := b.Encode()
	if err := s.blocks.write(0, 0, data); err != nil {
		return fmt.Errorf("write genesis: %w", err)
	}
	if err := s.w.begin(ctx); err != nil {
		return fmt.Errorf("write genesis: %w", err)
	}
	err := func() error {
		for k, v := range map[string]string{
			"schema_version":     schemaVersion,
			"chain_id":           s.genesis.ChainID,
			"genesis_commitment": s.genesis.Commitment.String(),
		} {
			if _, err := s.w.conn.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, k, v); err != nil {
				return err
			}
		}
		if _, err := s.w.conn.ExecContext(ctx, `INSERT INTO tips (id, committed, proven) VALUES (1, 0, 0)`); err != nil {
			return err
		}
		if err := s.insertBlockRows(ctx, b, &state.Applied{State: st}, loc{0, uint32(len(data))}, merkle.Sum(data)); err != nil {
			return err
		}
		return s.insertMMRNodes(ctx, st.Chain, nil)
	}()
	if err == nil {
		err = s.w.commit(ctx)
	}
	if err != nil {
		s.w.rollback()
		return fmt.Errorf("write genesis: %w", err)
	}
	return nil
}

// blockRow is what the blocks table holds of one block.
type blockRow struct {
	commitment merkle.Hash
	header     []byte
	loc        loc
	fileHash   merkle.Hash
}

func (s *Store) blockRow(ctx context.Context, n uint64) (blockRow, error) {
	var r blockRow
	var c, fh []byte
	err := s.db.QueryRowContext(ctx, `SELECT commitment, header, file_offset, file_length, file_hash FROM blocks WHERE number = ?`, n).
		Scan(&c, &r.header, &r.loc.off, &r.loc.len, &fh)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: block %d is missing from the database", ErrDamaged, n)
	}
	if err != nil {
		return r, fmt.Errorf("read block %d row: %w", n, err)
	}
	copy(r.commitment[:], c)
	copy(r.fileHash[:], fh)
	return r, nil
}

// blockLoc returns where block n lies in its segment.
func (s *Store) blockLoc(ctx context.Context, n uint64) (loc, error) {
	return s.itemLoc(ctx, `SELECT file_offset, file_length FROM blocks WHERE number = ?`, "block", n)
}

// proofLoc returns where the proof of block n lies in its segment.
func (s *Store) proofLoc(ctx context.Context, n uint64) (loc, error) {
	return s.itemLoc(ctx, `SELECT file_offset, file_length FROM proofs WHERE number = ?`, "proof", n)
}

func (s *Store) itemLoc(ctx context.Context, query, kind string, n uint64) (loc, error) {
	var l loc
	err := s.db.QueryRowContext(ctx, query, n).Scan(&l.off, &l.len)
	if errors.Is(err, sql.ErrNoRows) {
		return l, fmt.Errorf("%w: %s %d has no row in the database", ErrDamaged, kind, n)
	}
	if err != nil {
		return l, fmt.Errorf("read %s %d location: %w", kind, n, err)
	}
	return l, nil
}

// load opens the committed tip: it reads what the tips row names, makes the
// files agree with it and brings the state database to it. Its work is
// bounded by the number of segments and the blocks in flight at a crash,
// not by the state: nothing is read whole.
func (s *Store) load(ctx context.Context) error {
	var committed, proven uint64
	if err := s.db.QueryRowContext(ctx, `SELECT committed, proven FROM tips WHERE id = 1`).Scan(&committed, &proven); err != nil {
		return fmt.Errorf("read tips: %w", err)
	}
	if proven > committed {
		return fmt.Errorf("%w: proven tip %d is past committed tip %d", ErrDamaged, proven, committed)
	}

	// The tip block: its header, and the MMR the tips row implies.
	row, err := s.blockRow(ctx, committed)
	if err != nil {
		return err
	}
	tip, err := block.DecodeHeader(row.header)
	if err != nil {
		return fmt.Errorf("%w: header of block %d: %w", ErrDamaged, committed, err)
	}
	if tip.Commitment() != row.commitment || tip.Number != committed {
		return fmt.Errorf("%w: header of block %d does not match its commitment", ErrDamaged, committed)
	}
	chain, err := merkle.LoadMMR(committed+1, s.mmr)
	if err != nil {
		return fmt.Errorf("%w: MMR of blocks 0..%d: %w", ErrDamaged, committed, err)
	}
	prevChain, err := merkle.LoadMMR(committed, s.mmr)
	if err != nil {
		return fmt.Errorf("%w: MMR of blocks 0..%d: %w", ErrDamaged, committed-1, err)
	}
	if leaf, err := chain.LeafAt(committed); err != nil || leaf != row.commitment {
		return fmt.Errorf("%w: the MMR's last leaf is not block %d's commitment (%v)", ErrDamaged, committed, err)
	}
	// The MMR over 0..tip-1 must be what the tip committed to.
	if committed > 0 && prevChain.Root() != tip.ChainCommitment {
		return fmt.Errorf("%w: the MMR in the database does not give block %d's chain commitment", ErrDamaged, committed)
	}
	if leaf, err := chain.LeafAt(0); err != nil || leaf != s.genesis.Commitment {
		return fmt.Errorf("%w: block 0 is not the genesis block (%v)", ErrDamaged, err)
	}

	// Files: cut what was written past the commit point, and check the tip's
	// block file is intact (it is the one a crash could have hit).
	if err := s.blocks.recover(0, committed, true, func(n uint64) (loc, error) { return s.blockLoc(ctx, n) }); err != nil {
		return err
	}
	data, err := s.blocks.read(committed, row.loc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if merkle.Sum(data) != row.fileHash {
		return fmt.Errorf("%w: block file %s: block %d is corrupt (content hash mismatch)", ErrDamaged, s.blocks.path(committed/SegmentSpan), committed)
	}
	if err := s.proofs.recover(1, proven, proven > 0, func(n uint64) (loc, error) { return s.proofLoc(ctx, n) }); err != nil {
		return err
	}
	var lastProof loc
	if proven > 0 {
		if lastProof, err = s.proofLoc(ctx, proven); err != nil {
			return err
		}
	}

	accounts, nullifiers, err := s.loadState(ctx, tip)
	if err != nil {
		return err
	}
	s.publish(&Snapshot{
		st:       s,
		State:    &state.State{Header: tip, Commitment: row.commitment, Accounts: accounts, Nullifiers: nullifiers, Chain: chain, PrevChain: prevChain},
		Proven:   proven,
		tipLoc:   row.loc,
		proofLoc: lastProof,
	})
	return nil
}

// loadState returns the trees at the committed tip, bringing the state
// database to it first: back to a version it still holds if it is ahead,
// forward by replaying blocks from their files if it is behind (a fresh
// store's genesis, batches a power loss took, a state directory deleted).
func (s *Store) loadState(ctx context.Context, tip block.Header) (accounts, nullifiers *merkle.SMT, err error) {
	committed := tip.Number
	rec, ok, err := s.state.readTip()
	if err != nil {
		return nil, nil, err
	}
	var from uint64 // first block to replay
	switch {
	case !ok:
		// Nothing stored: start from the genesis trees.
		g := state.Genesis(s.genesis)
		accounts, nullifiers = g.Accounts, g.Nullifiers
		s.state.nextNode = 1
		from = 0
	case rec.block > committed:
		back, ok, err := s.state.readRoots(committed)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, fmt.Errorf("%w: state database %s is at block %d, past the committed tip %d, and holds no earlier version at it",
				ErrDamaged, filepath.Join(s.dir, "state"), rec.block, committed)
		}
		if err := s.state.rollBack(committed, back, rec.nextNode); err != nil {
			return nil, nil, err
		}
		rec = back
		fallthrough
	default:
		s.state.tip, s.state.nextNode = rec.block, max(s.state.nextNode, rec.nextNode)
		if accounts, nullifiers, err = s.storedTrees(rec); err != nil {
			return nil, nil, err
		}
		from = rec.block + 1
	}
	if err := s.state.loadRetained(); err != nil {
		return nil, nil, err
	}
	if from <= committed {
		s.replayed = int(committed - from + 1)
	}
	if accounts, nullifiers, err = s.replayStates(ctx, from, committed, accounts, nullifiers); err != nil {
		return nil, nil, err
	}
	if accounts.Root() != tip.AccountRoot {
		return nil, nil, fmt.Errorf("%w: the account tree in the state database does not give block %d's account root", ErrDamaged, committed)
	}
	if nullifiers.Root() != tip.NullifierRoot {
		return nil, nil, fmt.Errorf("%w: the nullifier tree in the state database does not give block %d's nullifier root", ErrDamaged, committed)
	}
	return accounts, nullifiers, nil
}

// storedTrees opens the trees a tip record of the state database names.
func (s *Store) storedTrees(rec tipRecord) (accounts, nullifiers *merkle.SMT, err error) {
	if accounts, err = merkle.LoadSMT(rec.accounts, s.state.src); err != nil {
		return nil, nil, fmt.Errorf("%w: state database: account tree: %w", ErrDamaged, err)
	}
	if nullifiers, err = merkle.LoadSMT(rec.nullifiers, s.state.src); err != nil {
		return nil, nil, fmt.Errorf("%w: state database: nullifier tree: %w", ErrDamaged, err)
	}
	return accounts, nullifiers, nil
}

// replayStates replays committed blocks from..to (none if from > to) into
// the trees and the state database, writing the trees every
// stateDeferBlocks blocks and at the last.
func (s *Store) replayStates(ctx context.Context, from, to uint64, accounts, nullifiers *merkle.SMT) (*merkle.SMT, *merkle.SMT, error) {
	var err error
	for n := from; n <= to; n++ {
		persist := n == to || (n-from+1)%uint64(max(stateDeferBlocks, 1)) == 0
		if accounts, nullifiers, err = s.replayState(ctx, n, accounts, nullifiers, persist); err != nil {
			return nil, nil, err
		}
	}
	return accounts, nullifiers, nil
}

// replayState applies committed block n's changes to the trees and writes
// its state batch, as ApplyBlock does after its commit.
func (s *Store) replayState(ctx context.Context, n uint64, accounts, nullifiers *merkle.SMT, persist bool) (*merkle.SMT, *merkle.SMT, error) {
	l, err := s.blockLoc(ctx, n)
	if err != nil {
		return nil, nil, err
	}
	data, err := s.blocks.read(n, l)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: replay block %d into the state database: %w", ErrDamaged, n, err)
	}
	b, err := block.Decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: block file %s: block %d: %w", ErrDamaged, s.blocks.path(n/SegmentSpan), n, err)
	}
	if n > 0 {
		if accounts, nullifiers, err = state.NextTrees(accounts, nullifiers, b); err != nil {
			return nil, nil, fmt.Errorf("replay block %d into the state database: %w", n, err)
		}
		if accounts.Root() != b.Header.AccountRoot || nullifiers.Root() != b.Header.NullifierRoot {
			return nil, nil, fmt.Errorf("%w: block %d from its file does not give its header's tree roots", ErrDamaged, n)
		}
	}
	now := time.Now()
	acc, nul, err := s.writeState(n, accounts, nullifiers, []blockNotes{{n: n, ids: b.NoteIDs(), notes: b.Body.Notes}}, persist, now)
	if err != nil {
		return nil, nil, storageErr(fmt.Sprintf("replay block %d into the state database", n), err)
	}
	if !persist {
		s.state.deferred = s.state.deferred.add(1, len(data), now)
	}
	return acc, nul, nil
}

// writeState writes the state batch of committed blocks up to n: the index
// entries of their notes and, with persist, the trees' new nodes (of every
// block stacked on them since the last batch that wrote them) and the tip
// record. Without persist it returns the trees as they were, in memory.
// CONTRACT: s.mu must be locked (or Open still running).
func (s *Store) writeState(n uint64, accounts, nullifiers *merkle.SMT, notes []blockNotes, persist bool, now time.Time) (*merkle.SMT, *merkle.SMT, error) {
	sb := s.state.newBatch()
	for _, bn := range notes {
		for i, id := range bn.ids {
			if err := sb.putNote(id, bn.notes[i].Tag, notePos(bn.n, uint32(i))); err != nil {
				sb.b.Close()
				return nil, nil, err
			}
		}
	}
	if !persist {
		if err := sb.commitNotes(); err != nil {
			return nil, nil, err
		}
		return accounts, nullifiers, nil
	}
	acc, nul, rec, err := sb.persistTrees(n, accounts, nullifiers)
	if err != nil {
		sb.b.Close()
		return nil, nil, err
	}
	if err := sb.commit(rec, now); err != nil {
		return nil, nil, err
	}
	return acc, nul, nil
}

// blockNotes is what the state database indexes of one block's notes.
type blockNotes struct {
	n     uint64
	ids   []merkle.Hash
	notes []block.Note
}

// mmrNodes reads the MMR's nodes from SQLite. thread-safe.
type mmrNodes struct{ db *sql.DB }

func (m mmrNodes) ReadMMRNodes(pos []uint64, out []merkle.Hash) error {
	if len(pos) == 0 {
		return nil
	}
	args := make([]any, len(pos))
	at := make(map[uint64][]int, len(pos))
	for i, p := range pos {
		args[i] = p
		at[p] = append(at[p], i)
	}
	rows, err := m.db.Query(`SELECT pos, hash FROM mmr WHERE pos IN (?`+strings.Repeat(",?", len(pos)-1)+`)`, args...)
	if err != nil {
		return fmt.Errorf("read MMR nodes: %w", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var p uint64
		var h []byte
		if err := rows.Scan(&p, &h); err != nil {
			return fmt.Errorf("read MMR nodes: %w", err)
		}
		if len(h) != merkle.Size {
			return fmt.Errorf("%w: MMR node %d is %d bytes", ErrDamaged, p, len(h))
		}
		for _, i := range at[p] {
			out[i] = merkle.Hash(h)
			found++
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read MMR nodes: %w", err)
	}
	if found != len(pos) {
		return fmt.Errorf("%w: %d of %d MMR nodes are missing from the database", ErrDamaged, len(pos)-found, len(pos))
	}
	return nil
}

// Close closes the store. Readers still holding a Snapshot get ErrClosed
// from reads that need the files or the database.
func (s *Store) Close() error {
	s.stageMu.Lock() // no Stage reads the state database while it closes
	defer s.stageMu.Unlock()
	s.stageClosed = true
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stopPreload.Store(true)
	if s.preloaded != nil {
		<-s.preloaded
	}
	if s.state != nil && s.state.refusing() == nil {
		// The trees of the last blocks, so that the next Open need not
		// replay them; should the write fail, it will.
		_ = s.persistDeferred(s.snap.Load(), time.Now())
	}
	return s.closeAll()
}

func (s *Store) closeAll() error {
	var errs []error
	if s.w != nil {
		errs = append(errs, s.w.close())
	}
	if s.notesAt != nil {
		errs = append(errs, s.notesAt.Close())
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	if s.blocks != nil {
		errs = append(errs, s.blocks.close())
	}
	if s.proofs != nil {
		errs = append(errs, s.proofs.close())
	}
	if s.state != nil {
		errs = append(errs, s.state.close())
	}
	return errors.Join(errs...)
}

// Replayed returns how many committed blocks Open replayed from their files
// into the state database: those whose batches a crash took (or, for a
// fresh store, the genesis block). After a clean stop, none. thread-safe.
func (s *Store) Replayed() int { return s.replayed }

// Verifier checks proofs against the genesis file's prover key and
// remembers those that passed: a proof a caller checked with it before
// ApplyProofs is not checked twice. thread-safe.
func (s *Store) Verifier() block.Verifier { return s.verifier }

// proofMemoSlots is how many proofs that passed the store's Verifier
// remembers (about 0.6 MB): more than a follower fetches ahead of its
// proven tip with the default window and credits, so a proof checked at
// its fetch is still remembered when it is applied.
const proofMemoSlots = 4096

// Genesis returns the genesis file the store was opened with.
func (s *Store) Genesis() *genesis.File { return s.genesis }

// Dir returns the store's data directory.
func (s *Store) Dir() string { return s.dir }

// publish makes sn the view readers see and wakes everyone waiting on
// Changed. CONTRACT: s.mu must be locked (or Open still running).
func (s *Store) publish(sn *Snapshot) {
	if old := s.snap.Load(); old != nil {
		now := time.Now()
		sn.CommittedAt, sn.ProvenAt = old.CommittedAt, old.ProvenAt
		if sn.Committed() != old.Committed() {
			sn.CommittedAt = now
		} else {
			sn.ApplyStart = old.ApplyStart
		}
		if sn.Proven != old.Proven {
			sn.ProvenAt = now
		}
	}
	s.snap.Store(sn)
	next := make(chan struct{})
	if old := s.changed.Swap(&next); old != nil {
		close(*old)
	}
}

// Changed returns a channel that is closed when the next block or proof is
// committed: take it, check the snapshot, then wait on it, and nothing is
// missed. thread-safe.
func (s *Store) Changed() <-chan struct{} { return *s.changed.Load() }

// Snapshot returns the current consistent view. thread-safe.
func (s *Store) Snapshot() *Snapshot { return s.snap.Load() }

// Tips returns the committed and proven tips. thread-safe.
func (s *Store) Tips() (committed, proven uint64) {
	sn := s.snap.Load()
	return sn.Committed(), sn.Proven
}
