package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"

	"storesync/block"
	"storesync/merkle"
	"storesync/state"
)

// Reads go through a Snapshot so that every answer belongs to one tip. Rows
// in SQLite past the snapshot's tip (committed by the writer meanwhile) are
// filtered out by block number; the trees and file locations are the
// snapshot's own.

// BlockBytes returns the encoded block n. thread-safe.
func (s *Snapshot) BlockBytes(n uint64) ([]byte, error) {
	if n > s.Committed() {
		return nil, fmt.Errorf("block %d: %w (committed tip %d)", n, ErrNotFound, s.Committed())
	}
	l := s.tipLoc
	if n < s.Committed() {
		var err error
		if l, err = s.st.blockLocs.lookup(context.Background(), s.st.db, n, s.Committed()); err != nil {
			return nil, err
		}
	}
	return s.st.blocks.read(n, l)
}

// Block returns block n decoded.
func (s *Snapshot) Block(n uint64) (*block.Block, error) {
	data, err := s.BlockBytes(n)
	if err != nil {
		return nil, err
	}
	b, err := block.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: block file %s: block %d: %w", ErrDamaged, s.st.blocks.path(n/SegmentSpan), n, err)
	}
	return b, nil
}

// ProofBytes returns the encoded proof of block n, if n is proven.
func (s *Snapshot) ProofBytes(n uint64) ([]byte, error) {
	if n == 0 || n > s.Proven {
		return nil, fmt.Errorf("proof of block %d: %w (proven tip %d)", n, ErrNotFound, s.Proven)
	}
	l := s.proofLoc
	if n < s.Proven {
		var err error
		if l, err = s.st.proofLocs.lookup(context.Background(), s.st.db, n, s.Proven); err != nil {
			return nil, err
		}
	}
	return s.st.proofs.read(n, l)
}

// Header returns the header of block n.
func (s *Snapshot) Header(ctx context.Context, n uint64) (block.Header, error) {
	if n > s.Committed() {
		return block.Header{}, fmt.Errorf("header %d: %w (committed tip %d)", n, ErrNotFound, s.Committed())
	}
	if n == s.Committed() {
		return s.State.Header, nil
	}
	var hdr []byte
	if err := s.st.db.QueryRowContext(ctx, `SELECT header FROM blocks WHERE number = ?`, n).Scan(&hdr); err != nil {
		return block.Header{}, fmt.Errorf("header %d: %w", n, err)
	}
	return block.DecodeHeader(hdr)
}

// ChainProof proves block n's commitment against the tip header's chain
// commitment (the MMR of blocks 0..tip-1), so a client holding the tip header
// can verify it. The tip itself has no such proof: it is the header.
func (s *Snapshot) ChainProof(n uint64) (merkle.MMRProof, error) {
	if n >= s.Committed() {
		return merkle.MMRProof{}, fmt.Errorf("chain proof %d: %w: only blocks below the committed tip %d have one", n, ErrNotFound, s.Committed())
	}
	return s.State.PrevChain.Prove(n)
}

// Account returns an account's state commitment and its proof against the
// account root of the committed tip. For an unknown account the commitment
// is zero and the proof shows absence. The error is a failed read of the
// tree's nodes.
func (s *Snapshot) Account(id merkle.Hash) (merkle.Hash, merkle.SMTProof, bool, error) {
	p, v, ok, err := s.State.Accounts.TryLookup(id)
	if err != nil {
		return v, p, false, fmt.Errorf("account %s: %w", id.Short(), err)
	}
	return v, p, ok, nil
}

// NullifierStatus says whether a nullifier is spent, where, and proves it.
type NullifierStatus struct {
	Nullifier merkle.Hash
	SpentAt   uint64 // 0: not spent (genesis spends nothing)
	Proof     merkle.SMTProof
}

// Nullifiers returns the status of each nullifier, in order.
func (s *Snapshot) Nullifiers(nfs []merkle.Hash) ([]NullifierStatus, error) {
	out := make([]NullifierStatus, len(nfs))
	for i, nf := range nfs {
		p, v, ok, err := s.State.Nullifiers.TryLookup(nf)
		if err != nil {
			return nil, fmt.Errorf("nullifier %s: %w", nf.Short(), err)
		}
		out[i] = NullifierStatus{Nullifier: nf, Proof: p}
		if ok {
			out[i].SpentAt = state.SpentAt(v)
		}
	}
	return out, nil
}

// NoteRecord is a stored note with its position.
type NoteRecord struct {
	ID    merkle.Hash
	Block uint64
	Index uint32
	Note  block.Note
}

// Position orders notes: by block, then index in the block.
type Position struct {
	Block uint64
	Index uint32
}

func (p Position) String() string { return fmt.Sprintf("%d.%d", p.Block, p.Index) }

// notePos packs a note's position into the notes table's integer key, so
// that rows are appended in chain order and a position range is a key range.
// A block holds fewer than 2^20 notes (MaxBlockBytes / smallest note).
func notePos(block uint64, index uint32) uint64 { return block<<20 | uint64(index) }

const noteColumns = `pos, id, tag, sender, details`

func scanNote(sc interface{ Scan(...any) error }) (NoteRecord, error) {
	var r NoteRecord
	var id, sender []byte
	var pos uint64
	if err := sc.Scan(&pos, &id, &r.Note.Tag, &sender, &r.Note.Details); err != nil {
		return r, err
	}
	r.Block, r.Index = pos>>20, uint32(pos&(1<<20-1))
	copy(r.ID[:], id)
	copy(r.Note.Sender[:], sender)
	return r, nil
}

// NotesByID returns the notes with these IDs that exist at this snapshot,
// in the order asked; unknown IDs are skipped. The state database's index
// gives each ID's position; the row at it must hold that ID and lie at or
// below this snapshot's tip (the index may run ahead of it, or hold entries
// of blocks a crash took back).
func (s *Snapshot) NotesByID(ctx context.Context, ids []merkle.Hash) ([]NoteRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	end := notePos(s.Committed()+1, 0)
	args := make([]uint64, 0, len(ids))
	for i := range ids {
		pos, ok, err := s.st.state.notePos(ids[i])
		if err != nil {
			return nil, fmt.Errorf("notes by id: %w", err)
		}
		if ok && pos < end {
			args = append(args, pos)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	byPos, err := s.notesAt(ctx, args)
	if err != nil {
		return nil, fmt.Errorf("notes by id: %w", err)
	}
	found := make(map[merkle.Hash]NoteRecord, len(byPos))
	for _, r := range byPos {
		found[r.ID] = r
	}
	out := make([]NoteRecord, 0, len(found))
	for _, id := range ids {
		if r, ok := found[id]; ok {
			out = append(out, r)
			delete(found, id) // an ID asked twice is answered once
		}
	}
	return out, nil
}

// NotesByTags returns up to limit notes with any of the tags, from position
// from onwards, in position order, and the position to continue from (nil
// when there is nothing more at this snapshot). The state database's tag
// index gives each tag's positions in order, a seek and a short scan; as
// for NotesByID, a row must lie below this snapshot's tip and still hold
// the tag its entry names (a crash may have taken back the block it was
// written for).
func (s *Snapshot) NotesByTags(ctx context.Context, tags []uint32, from Position, limit int) ([]NoteRecord, *Position, error) {
	if len(tags) == 0 || limit <= 0 || from.Block > s.Committed() {
		// Past the tip there is nothing yet (and a position there would
		// not fit its 64 bits).
		return nil, nil, nil
	}
	tags = slices.Compact(slices.Sorted(slices.Values(tags)))
	end := notePos(s.Committed()+1, 0)
	start := notePos(from.Block, from.Index)
	want := limit + 1 // one more than asked says where the next page starts
	var out []NoteRecord
	type cand struct {
		pos uint64
		tag uint32
	}
	for len(out) < want && start < end {
		need := want - len(out)
		var cands []cand
		exhausted := true
		for _, t := range tags {
			ps, err := s.st.state.tagPositions(t, start, end, need)
			if err != nil {
				return nil, nil, fmt.Errorf("notes by tags: %w", err)
			}
			if len(ps) == need {
				exhausted = false
			}
			for _, p := range ps {
				cands = append(cands, cand{p, t})
			}
		}
		if len(cands) == 0 {
			break
		}
		slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.pos, b.pos) })
		if len(cands) > need {
			// Past the need-th position another tag may still have
			// positions this round did not ask for.
			cands, exhausted = cands[:need], false
		}
		args := make([]uint64, len(cands))
		for i, c := range cands {
			args[i] = c.pos
		}
		rows, err := s.notesAt(ctx, args)
		if err != nil {
			return nil, nil, fmt.Errorf("notes by tags: %w", err)
		}
		for _, c := range cands {
			if r, ok := rows[c.pos]; ok && r.Note.Tag == c.tag {
				out = append(out, r)
			}
		}
		if exhausted {
			break
		}
		start = cands[len(cands)-1].pos + 1
	}
	if len(out) > limit {
		next := &Position{Block: out[limit].Block, Index: out[limit].Index}
		return out[:limit], next, nil
	}
	return out, nil, nil
}

// notesAt reads the notes table's rows at these positions, by position.
func (s *Snapshot) notesAt(ctx context.Context, positions []uint64) (map[uint64]NoteRecord, error) {
	list := append(make([]byte, 0, 2+len(positions)*16), '[')
	for i, p := range positions {
		if i > 0 {
			list = append(list, ',')
		}
		list = strconv.AppendUint(list, p, 10)
	}
	list = append(list, ']')
	rows, err := s.st.notesAt.QueryContext(ctx, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[uint64]NoteRecord, len(positions))
	for rows.Next() {
		r, err := scanNote(rows)
		if err != nil {
			return nil, err
		}
		found[notePos(r.Block, r.Index)] = r
	}
	return found, rows.Err()
}

// Block returns block n of the current snapshot (the workload's History).
func (s *Store) Block(n uint64) (*block.Block, error) { return s.Snapshot().Block(n) }

// BlockBytes returns encoded block n of the current snapshot.
func (s *Store) BlockBytes(n uint64) ([]byte, error) { return s.Snapshot().BlockBytes(n) }
