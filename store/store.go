// Package store is the block store that primary and followers run alike. It
// keeps three media:
//
//   - block files: the encoded bytes of every block and proof, in
//     append-only segment files, written and fdatasync'ed before the block is
//     committed;
//   - an SQLite database (WAL mode, synchronous=FULL): headers, accounts,
//     notes, nullifiers, proofs and the tips;
//   - in memory, the chain state (package state): the account and nullifier
//     sparse Merkle trees and the MMR of block commitments, rebuilt from
//     SQLite by Open.
//
// ApplyBlock checks everything before it changes anything, then writes the
// block file, then commits one SQLite transaction (the commit point), then
// publishes the new in-memory snapshot. A crash anywhere leaves a store
// that Open brings back to the last committed block by itself: block file
// bytes past it are cut, the trees are rebuilt and checked against its header.
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
	"sync"
	"sync/atomic"

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
	db       *sql.DB
	blocks   *segments
	proofs   *segments

	mu     sync.Mutex // the single writer; guards w and closed
	w      *writer
	closed bool

	snap    atomic.Pointer[Snapshot]      // what readers see
	changed atomic.Pointer[chan struct{}] // closed and replaced at each publish
}

// Snapshot is one consistent view of the store: everything a reader sees
// through it belongs to the same committed and proven tips, whatever the
// writer does meanwhile.
type Snapshot struct {
	st        *Store
	State     *state.State // chain state at the committed tip
	Proven    uint64
	blockLocs []loc // index n: block n; shared append-only with later snapshots
	proofLocs []loc // index n-1: proof of block n
}

// Committed returns the committed tip.
func (s *Snapshot) Committed() uint64 { return s.State.Header.Number }

// Open opens the store in dir, creating it from g if dir holds none. It
// checks that an existing store belongs to g's chain, repairs what a crash
// may have left, and rebuilds the in-memory trees.
func Open(dir string, g *genesis.File) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{dir: dir, genesis: g, rules: state.RulesOf(g), verifier: g.Verifier()}
	if err := s.open(); err != nil {
		s.closeAll()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return s, nil
}

func (s *Store) open() error {
	var err error
	if s.db, err = openDB(s.dir); err != nil {
		return err
	}
	if s.blocks, err = openSegments(filepath.Join(s.dir, "blocks"), "block"); err != nil {
		return err
	}
	if s.proofs, err = openSegments(filepath.Join(s.dir, "proofs"), "proof"); err != nil {
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
		return false, fmt.Errorf("database schema version %q, this build reads %q", v, schemaVersion)
	}
	if c := meta["genesis_commitment"]; c != s.genesis.Commitment.String() {
		return false, fmt.Errorf("%w: data directory holds chain %q with genesis %s, the genesis file is chain %q with %s",
			ErrGenesis, meta["chain_id"], c, s.genesis.ChainID, s.genesis.Commitment)
	}
	return false, nil
}

// initGenesis writes the genesis block like any other: file first, then one
// transaction that also writes the meta rows, so a crash here leaves either
// an empty store or a complete one.
func (s *Store) initGenesis(ctx context.Context) error {
	if err := s.blocks.recover(0, nil); err != nil {
		return err
	}
	if err := s.proofs.recover(1, nil); err != nil {
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
		return s.insertBlockRows(ctx, b, &state.Applied{State: st}, loc{0, uint32(len(data))}, merkle.Sum(data))
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

// load rebuilds the snapshot from SQLite and makes the files agree with it.
func (s *Store) load(ctx context.Context) error {
	var committed, proven uint64
	if err := s.db.QueryRowContext(ctx, `SELECT committed, proven FROM tips WHERE id = 1`).Scan(&committed, &proven); err != nil {
		return fmt.Errorf("read tips: %w", err)
	}
	if proven > committed {
		return fmt.Errorf("%w: proven tip %d is past committed tip %d", ErrDamaged, proven, committed)
	}

	// Blocks: commitments into the MMR, file locations, the tip's header.
	chain, prevChain := &merkle.MMR{}, &merkle.MMR{}
	blockLocs := make([]loc, 0, committed+1)
	var tip block.Header
	var tipHash merkle.Hash
	rows, err := s.db.QueryContext(ctx, `SELECT number, commitment, header, file_offset, file_length, file_hash FROM blocks WHERE number <= ? ORDER BY number`, committed)
	if err != nil {
		return fmt.Errorf("read blocks: %w", err)
	}
	for rows.Next() {
		var n uint64
		var c, hdr, fh []byte
		var l loc
		if err := rows.Scan(&n, &c, &hdr, &l.off, &l.len, &fh); err != nil {
			rows.Close()
			return fmt.Errorf("read blocks: %w", err)
		}
		if n != uint64(len(blockLocs)) {
			rows.Close()
			return fmt.Errorf("%w: block %d is missing from the database", ErrDamaged, len(blockLocs))
		}
		var h merkle.Hash
		copy(h[:], c)
		if n == committed {
			if tip, err = block.DecodeHeader(hdr); err != nil {
				rows.Close()
				return fmt.Errorf("%w: header of block %d: %w", ErrDamaged, n, err)
			}
			if tip.Commitment() != h {
				rows.Close()
				return fmt.Errorf("%w: header of block %d does not match its commitment", ErrDamaged, n)
			}
			// The MMR over 0..tip-1 must be what the tip committed to.
			if n > 0 && chain.Root() != tip.ChainCommitment {
				rows.Close()
				return fmt.Errorf("%w: block commitments in the database do not give block %d's chain commitment", ErrDamaged, n)
			}
			copy(tipHash[:], fh)
		}
		prevChain, chain = chain, chain.Append(h)
		blockLocs = append(blockLocs, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read blocks: %w", err)
	}
	if uint64(len(blockLocs)) != committed+1 {
		return fmt.Errorf("%w: database has blocks 0..%d, committed tip is %d", ErrDamaged, len(blockLocs)-1, committed)
	}
	if chain.Leaf(0) != s.genesis.Commitment {
		return fmt.Errorf("%w: block 0 is not the genesis block", ErrDamaged)
	}

	// Files: cut what was written past the commit point, and check the tip's
	// block file is intact (it is the one a crash could have hit).
	if err := s.blocks.recover(0, blockLocs); err != nil {
		return err
	}
	data, err := s.blocks.read(committed, blockLocs[committed])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if merkle.Sum(data) != tipHash {
		return fmt.Errorf("%w: block file %s: block %d is corrupt (content hash mismatch)", ErrDamaged, s.blocks.path(committed/SegmentSpan), committed)
	}

	proofLocs := make([]loc, 0, proven)
	rows, err = s.db.QueryContext(ctx, `SELECT number, file_offset, file_length FROM proofs WHERE number <= ? ORDER BY number`, proven)
	if err != nil {
		return fmt.Errorf("read proofs: %w", err)
	}
	for rows.Next() {
		var n uint64
		var l loc
		if err := rows.Scan(&n, &l.off, &l.len); err != nil {
			rows.Close()
			return fmt.Errorf("read proofs: %w", err)
		}
		if n != uint64(len(proofLocs))+1 {
			rows.Close()
			return fmt.Errorf("%w: proof of block %d is missing from the database", ErrDamaged, len(proofLocs)+1)
		}
		proofLocs = append(proofLocs, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read proofs: %w", err)
	}
	if uint64(len(proofLocs)) != proven {
		return fmt.Errorf("%w: database has %d proofs, proven tip is %d", ErrDamaged, len(proofLocs), proven)
	}
	if err := s.proofs.recover(1, proofLocs); err != nil {
		return err
	}

	accounts, err := loadTree(ctx, s.db, `SELECT id, commitment, 0 FROM accounts`, func(v []byte, _ uint64) (h merkle.Hash) {
		copy(h[:], v)
		return h
	})
	if err != nil {
		return fmt.Errorf("read accounts: %w", err)
	}
	if accounts.Root() != tip.AccountRoot {
		return fmt.Errorf("%w: accounts in the database do not give block %d's account root", ErrDamaged, committed)
	}
	nullifiers, err := loadTree(ctx, s.db, `SELECT nullifier, NULL, block FROM nullifiers`, func(_ []byte, n uint64) merkle.Hash {
		return state.NullifierValue(n)
	})
	if err != nil {
		return fmt.Errorf("read nullifiers: %w", err)
	}
	if nullifiers.Root() != tip.NullifierRoot {
		return fmt.Errorf("%w: nullifiers in the database do not give block %d's nullifier root", ErrDamaged, committed)
	}
	s.publish(&Snapshot{
		st:        s,
		State:     &state.State{Header: tip, Commitment: chain.Leaf(committed), Accounts: accounts, Nullifiers: nullifiers, Chain: chain, PrevChain: prevChain},
		Proven:    proven,
		blockLocs: blockLocs,
		proofLocs: proofLocs,
	})
	return nil
}

// loadTree builds a tree from rows of (key blob, value blob, value int);
// value turns the last two into the leaf value.
func loadTree(ctx context.Context, db *sql.DB, query string, value func([]byte, uint64) merkle.Hash) (*merkle.SMT, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var kvs []merkle.KV
	for rows.Next() {
		var k, v []byte
		var n uint64
		if err := rows.Scan(&k, &v, &n); err != nil {
			return nil, err
		}
		if len(k) != merkle.Size {
			return nil, fmt.Errorf("%w: key %x is %d bytes", ErrDamaged, k, len(k))
		}
		kv := merkle.KV{Value: value(v, n)}
		copy(kv.Key[:], k)
		kvs = append(kvs, kv)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return merkle.BuildSMT(kvs), nil
}

// Close closes the store. Readers still holding a Snapshot get ErrClosed
// from reads that need the files or the database.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeAll()
}

func (s *Store) closeAll() error {
	var errs []error
	if s.w != nil {
		errs = append(errs, s.w.close())
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
	return errors.Join(errs...)
}

// Genesis returns the genesis file the store was opened with.
func (s *Store) Genesis() *genesis.File { return s.genesis }

// Dir returns the store's data directory.
func (s *Store) Dir() string { return s.dir }

// publish makes sn the view readers see and wakes everyone waiting on
// Changed. CONTRACT: s.mu must be locked (or Open still running).
func (s *Store) publish(sn *Snapshot) {
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
