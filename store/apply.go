package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"storesync/block"
	"storesync/merkle"
	"storesync/state"
)

// Report says what one ApplyBlock did and where its time went, stage by
// stage, for metrics and traces.
type Report struct {
	Number    uint64
	Bytes     int
	Start     time.Time
	Validate  time.Duration // every check except the tree roots
	Trees     time.Duration // computing the new trees and MMR
	BlockFile time.Duration // write + fdatasync of the block file
	SQLite    time.Duration // the transaction, commit included
	State     time.Duration // the state database batch: tree nodes, note index
	// Nodes and Pruned: the tree records (Options.RecordLevels levels of
	// branches each) the state database batch wrote, and the replaced ones
	// of an older version it deleted.
	Nodes, Pruned int
}

// ApplyBlockBytes decodes and applies an encoded block. A block that does not
// decode is rejected as the next block expected.
func (s *Store) ApplyBlockBytes(ctx context.Context, data []byte) (Report, error) {
	b, err := block.Decode(data)
	if err != nil {
		committed, _ := s.Tips()
		return Report{}, &state.RejectError{Number: committed + 1, Check: state.CheckDecode, Reason: err.Error(), Cause: err}
	}
	return s.ApplyBlock(ctx, b)
}

// ApplyBlock validates b against the committed tip and commits it. A
// rejected block returns a *state.RejectError and changes nothing. Any
// other error (I/O) also leaves the committed state as it was. thread-safe:
// writers are serialised.
func (s *Store) ApplyBlock(ctx context.Context, b *block.Block) (Report, error) {
	rep := Report{Number: b.Header.Number, Start: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return rep, ErrClosed
	}
	n := b.Header.Number
	if err := s.catchUpState(ctx); err != nil {
		return rep, err
	}
	cur := s.snap.Load()
	next, err := cur.State.Apply(b, s.rules)
	if err != nil {
		if errors.Is(err, state.ErrRejected) {
			return rep, err
		}
		return rep, storageErr(fmt.Sprintf("apply block %d: read state", n), err)
	}
	rep.Validate, rep.Trees = next.Validate, next.Trees

	t := time.Now()
	data := b.Encode()
	rep.Bytes = len(data)
	l := loc{len: uint32(len(data))}
	if n%SegmentSpan != 0 {
		l.off = cur.tipLoc.end()
	}
	if err := s.blocks.write(n, l.off, data); err != nil {
		// A full disk gets back what the failed write took; nothing of
		// SQLite was touched yet.
		s.blocks.cut(n, l.off)
		return rep, storageErr(fmt.Sprintf("apply block %d", n), err)
	}
	rep.BlockFile = time.Since(t)

	t = time.Now()
	if err := s.commitBlock(ctx, b, next, l, merkle.Sum(data)); err != nil {
		// The block's bytes stay in its file past the committed end: a
		// retry of the same block writes them again at the same offset,
		// and Open cuts them if none comes. They are not cut here: a commit
		// whose fsync failed may still be on disk, and would then need them.
		return rep, storageErr(fmt.Sprintf("apply block %d", n), err)
	}
	rep.SQLite = time.Since(t)

	// Committed. The state batch follows; should the disk refuse it, the
	// snapshot keeps the trees in memory and the next ApplyBlock (or Open)
	// writes the batch again from the block file before anything else.
	t = time.Now()
	st := *next.State
	st.Chain = next.State.Chain.Persisted(s.mmr)
	if acc, nul, err := s.writeState(n, st.Accounts, st.Nullifiers, next.NoteIDs, b.Body.Notes, t); err == nil {
		st.Accounts, st.Nullifiers = acc, nul
		rep.Nodes, rep.Pruned = s.state.lastNodes, s.state.lastPruned
	}
	rep.State = time.Since(t)

	s.publish(&Snapshot{
		st:         s,
		State:      &st,
		Proven:     cur.Proven,
		tipLoc:     l,
		proofLoc:   cur.proofLoc,
		ApplyStart: rep.Start,
	})
	return rep, nil
}

// catchUpState writes the state batches of committed blocks the state
// database lacks (one whose batch the disk refused), so that every block
// applied after it starts from a state database at the committed tip.
// CONTRACT: s.mu must be locked.
func (s *Store) catchUpState(ctx context.Context) error {
	cur := s.snap.Load()
	op := fmt.Sprintf("apply block %d: state database", cur.Committed()+1)
	if err := s.state.refusing(); err != nil {
		// Refused before anything is written, like a full block file.
		reason, ok := storageReason(err)
		if !ok {
			reason = "state database cannot write"
		}
		return &StorageError{Op: op, Reason: reason, Err: err}
	}
	if s.state.tip == cur.Committed() {
		return nil
	}
	if err := s.replayTail(ctx); err != nil {
		return storageErr(op, err)
	}
	return nil
}

// replayTail writes the state batches the state database lacks and
// publishes the trees reading from it. CONTRACT: s.mu must be locked.
func (s *Store) replayTail(ctx context.Context) error {
	cur := s.snap.Load()
	rec, ok, err := s.state.readTip()
	if err != nil {
		return err
	}
	if !ok || rec.block != s.state.tip {
		return fmt.Errorf("%w: state database tip moved under the store", ErrDamaged)
	}
	accounts, nullifiers, err := s.storedTrees(rec)
	if err != nil {
		return err
	}
	if accounts, nullifiers, err = s.replayStates(ctx, rec.block+1, cur.Committed(), accounts, nullifiers); err != nil {
		return err
	}
	st := *cur.State
	st.Accounts, st.Nullifiers = accounts, nullifiers
	sn := *cur
	sn.State = &st
	s.publish(&sn)
	return nil
}

// commitBlock runs the block's SQLite transaction: the commit point.
// CONTRACT: s.mu must be locked.
func (s *Store) commitBlock(ctx context.Context, b *block.Block, a *state.Applied, l loc, fileHash merkle.Hash) error {
	// Once begun, the transaction is not abandoned halfway because the
	// caller's context ended: either it commits or it rolls back.
	ctx = context.WithoutCancel(ctx)
	if err := s.w.begin(ctx); err != nil {
		return fmt.Errorf("sqlite begin: %w", err)
	}
	n := b.Header.Number
	err := s.insertBlockRows(ctx, b, a, l, fileHash)
	if err == nil {
		err = execOne(ctx, s.w.setCommitted, "set committed tip", n, n-1)
	}
	if err == nil {
		if err = s.w.commit(ctx); err == nil {
			return nil
		}
		err = fmt.Errorf("sqlite commit: %w", err)
	}
	s.w.rollback()
	return err
}

// insertBlockRows writes the block's rows and its MMR nodes (not the tips).
// CONTRACT: s.mu must be locked and a transaction open.
func (s *Store) insertBlockRows(ctx context.Context, b *block.Block, a *state.Applied, l loc, fileHash merkle.Hash) error {
	n := b.Header.Number
	c := a.State.Commitment
	if _, err := s.w.insBlock.ExecContext(ctx, n, c[:], b.Header.Encode(), l.off, l.len, fileHash[:]); err != nil {
		return fmt.Errorf("insert block row: %w", err)
	}
	body := &b.Body
	if err := s.w.insNote.insert(ctx, len(body.Notes), func(i int, args []any) []any {
		nt := &body.Notes[i]
		id := &a.NoteIDs[i]
		return append(args, notePos(n, uint32(i)), nt.Tag, id[:], nt.Sender[:], nt.Details)
	}); err != nil {
		return fmt.Errorf("insert notes: %w", err)
	}
	first, nodes := a.State.Chain.Unpersisted()
	if err := s.w.insMMR.insert(ctx, len(nodes), func(i int, args []any) []any {
		return append(args, first+uint64(i), nodes[i][:])
	}); err != nil {
		return fmt.Errorf("insert MMR nodes: %w", err)
	}
	return nil
}

// ApplyProof verifies and stores the proof of block n. Proofs are applied
// strictly in order (n = proven+1) and never past the committed tip.
// thread-safe.
func (s *Store) ApplyProof(ctx context.Context, n uint64, proof []byte) error {
	return s.ApplyProofs(ctx, n, [][]byte{proof})
}

// ApplyProofs applies the proofs of blocks first, first+1, ... at once: one
// file write and fdatasync per segment and one SQLite transaction, which is
// what makes catching up on proofs cheap. Every proof is verified before
// anything is written; if one fails, none is applied. thread-safe.
func (s *Store) ApplyProofs(ctx context.Context, first uint64, proofs [][]byte) error {
	if len(proofs) == 0 {
		return nil
	}
	last := first + uint64(len(proofs)) - 1
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	cur := s.snap.Load()
	if first != cur.Proven+1 {
		return fmt.Errorf("apply proof %d: %w: proven tip is %d", first, ErrProofOrder, cur.Proven)
	}
	if last > cur.Committed() {
		return fmt.Errorf("apply proof %d: %w: committed tip is %d", last, ErrProofAhead, cur.Committed())
	}
	for i, p := range proofs {
		n := first + uint64(i)
		c, err := cur.State.Chain.LeafAt(n)
		if err != nil {
			return storageErr(fmt.Sprintf("apply proof %d: read block commitment", n), err)
		}
		if err := s.verifier.VerifyProof(n, c, p); err != nil {
			return fmt.Errorf("apply proof %d: %w", n, err)
		}
	}
	locs := make([]loc, len(proofs))
	for i := 0; i < len(proofs); {
		// One write per segment: proofs i..j-1 share one.
		n := first + uint64(i)
		j := min(len(proofs), i+int(SegmentSpan-n%SegmentSpan))
		var off uint64
		switch {
		case n%SegmentSpan == 0 || n == 1:
			off = 0
		case i > 0:
			off = locs[i-1].end()
		default:
			off = cur.proofLoc.end()
		}
		var buf []byte
		for k := i; k < j; k++ {
			locs[k] = loc{off: off + uint64(len(buf)), len: uint32(len(proofs[k]))}
			buf = append(buf, proofs[k]...)
		}
		if err := s.proofs.write(n, off, buf); err != nil {
			s.proofs.cut(n, off)
			return storageErr(fmt.Sprintf("apply proofs %d..%d", first, last), err)
		}
		i = j
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.w.begin(ctx); err != nil {
		return storageErr(fmt.Sprintf("apply proofs %d..%d: sqlite begin", first, last), err)
	}
	var err error
	for i, l := range locs {
		if _, err = s.w.insProof.ExecContext(ctx, first+uint64(i), l.off, l.len); err != nil {
			break
		}
	}
	if err == nil {
		err = execOne(ctx, s.w.setProven, "set proven tip", last, first-1)
	}
	if err == nil {
		err = s.w.commit(ctx)
	}
	if err != nil {
		s.w.rollback()
		return storageErr(fmt.Sprintf("apply proofs %d..%d", first, last), err)
	}
	s.publish(&Snapshot{
		st:       s,
		State:    cur.State,
		Proven:   last,
		tipLoc:   cur.tipLoc,
		proofLoc: locs[len(locs)-1],
	})
	return nil
}
