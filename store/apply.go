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
// stage, for metrics and traces. A block applied in a group (ApplyBlocks)
// reports its own validation and trees, and its share of the group's
// commit: BlockFile, SQLite and State are the group's times over Group.
type Report struct {
	Number    uint64
	Bytes     int
	Start     time.Time
	Validate  time.Duration // every check except the tree roots
	Trees     time.Duration // computing the new trees and MMR
	BlockFile time.Duration // what validation did not hide of the block file's write + fdatasync
	SQLite    time.Duration // the transaction, commit included
	State     time.Duration // the state database batch: tree nodes, note index
	// Nodes and Pruned: the tree records (Options.RecordLevels levels of
	// branches each) the state database batch wrote, and the replaced ones
	// of an older version it deleted; a group's batch is reported on its
	// last block.
	Nodes, Pruned int
	// Group is how many blocks were committed with this one (1: alone).
	Group int
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
	reps, err := s.ApplyBlocks(ctx, []*block.Block{b})
	if len(reps) == 0 {
		return Report{Number: b.Header.Number, Start: time.Now()}, err
	}
	return reps[0], err
}

// ApplyBlocks validates blocks in order, each on the state the one before
// it leaves, by the same checks as ApplyBlock, and commits those that pass
// as one group: one write and fdatasync of the block file per segment, one
// SQLite transaction (the commit point: the tip moves from the first
// block's parent to the last block at once) and one state database batch.
// It returns the reports of the blocks it committed. If a block is
// rejected, the blocks before it are committed and the error is its
// *state.RejectError; it and those after it change nothing. Any other
// error (I/O) commits none of the group. Nothing is published before the
// group's commit: readers, Tips and Changed see the tip move once, to the
// last block. It is Stage then Commit. thread-safe: writers are serialised.
func (s *Store) ApplyBlocks(ctx context.Context, blocks []*block.Block) ([]Report, error) {
	g, rejected := s.Stage(ctx, blocks)
	if g == nil {
		return nil, rejected
	}
	reps, err := s.Commit(ctx, g)
	if err != nil {
		return nil, err
	}
	return reps, rejected
}

// Staged is a group of blocks validated and in the block file, not yet
// committed: Stage makes it, Commit commits it. Nothing of it is visible to
// readers, Tips or Changed before its Commit returns.
type Staged struct {
	blocks  []*block.Block
	applied []*state.Applied
	reps    []Report
	locs    []loc
	hashes  []merkle.Hash
	bytes   int
	// What it was validated on: the group staged before it, still to
	// commit then, or (parent nil) the committed state base.
	parent *Staged
	base   *state.State
	// persist: its commit writes the trees (see stateDeferBlocks); after
	// is what stays deferred once it committed.
	persist bool
	after   deferral
	// done is closed when its Commit has ended; published is the state
	// that Commit published (nil: it did not commit). A group staged on it
	// commits only on that state.
	done      chan struct{}
	published *state.State
}

// Blocks is how many blocks the group holds (those that passed).
func (g *Staged) Blocks() int { return len(g.blocks) }

// WritesTrees reports whether the group's commit writes the trees: the
// next group is then validated only once that commit ended (Stage waits for
// it), so a caller has nothing to gain from staging it sooner.
func (g *Staged) WritesTrees() bool { return g.persist }

// next is the number of the block after the group.
func (g *Staged) next() uint64 { return g.blocks[len(g.blocks)-1].Header.Number + 1 }

// Stage validates blocks in order by the same checks as ApplyBlock, each on
// the state the one before it leaves, and writes those that pass to the
// block file (synced), but commits nothing: Commit does. The first block is
// validated on the state of the group staged last, when it follows that
// group and that group's commit is still to come: so the next group is
// validated while the one before commits. (It waits for that commit when
// the commit writes the trees, or when the blocks do not follow the group;
// it then validates on the committed state.) A rejected block returns the
// group of the blocks before it (nil if none) with its *state.RejectError;
// any other error stages nothing. Every group staged must be passed to
// Commit. thread-safe: Stage calls are serialised.
func (s *Store) Stage(ctx context.Context, blocks []*block.Block) (*Staged, error) {
	if len(blocks) == 0 {
		return nil, nil
	}
	s.stageMu.Lock()
	defer s.stageMu.Unlock()
	if s.stageClosed {
		return nil, ErrClosed
	}
	g := &Staged{parent: s.tail, done: make(chan struct{})}
	if p := g.parent; p != nil {
		select {
		case <-p.done:
			g.parent = nil // committed or failed: the committed state is what it left
		default:
			if p.persist || blocks[0].Header.Number != p.next() {
				// The trees its commit writes are what this group's
				// would be stacked on; blocks that do not follow it are
				// validated on the tip it leaves, as ApplyBlock does.
				<-p.done
				g.parent = nil
			}
		}
	}
	var (
		prev   *state.State
		tipLoc loc
		def    deferral
	)
	if p := g.parent; p != nil {
		prev, tipLoc, def = p.applied[len(p.applied)-1].State, p.locs[len(p.locs)-1], p.after
	} else {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if err := s.catchUpState(ctx); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		cur := s.snap.Load()
		prev, tipLoc, def = cur.State, cur.tipLoc, s.state.deferred
		g.base = prev
		s.mu.Unlock()
	}

	// The block file is written and synced while the blocks are validated:
	// bytes past the committed end are never read, and those of blocks
	// that are rejected (or of a group that fails) are overwritten by the
	// next write at the same offsets, or cut by Open.
	// (A group that would open a segment is written after validation, so
	// that a rejection never leaves a segment file of no committed block.)
	files := make(chan fileWrite, 1)
	early := !opensSegment(blocks)
	if early {
		go func() { files <- s.writeBlockFiles(tipLoc, blocks) }()
	}

	// Validate each block on the state after the one before it: that
	// state exists in memory (trees stacked on unpersisted trees) well
	// before anything is durable.
	applied := make([]*state.Applied, 0, len(blocks))
	reps := make([]Report, 0, len(blocks))
	var rejected, readErr error
	for _, b := range blocks {
		rep := Report{Number: b.Header.Number, Start: time.Now()}
		next, err := prev.Apply(b, s.rules)
		if err != nil {
			if !errors.Is(err, state.ErrRejected) {
				readErr = storageErr(fmt.Sprintf("apply block %d: read state", b.Header.Number), err)
			}
			rejected = err
			break
		}
		rep.Validate, rep.Trees = next.Validate, next.Trees
		applied, reps = append(applied, next), append(reps, rep)
		prev = next.State
	}
	t := time.Now()
	var fw fileWrite
	if early {
		fw = <-files
		if fw.err == nil && len(applied) < len(blocks) {
			// The rejected block and those after it: what a rejection
			// leaves must be what it found.
			s.blocks.cut(blocks[len(applied)].Header.Number, fw.locs[len(applied)].off)
		}
	}
	if readErr != nil {
		return nil, readErr
	}
	if len(applied) == 0 {
		return nil, rejected
	}
	group := blocks[:len(applied)]
	if !early {
		fw = s.writeBlockFiles(tipLoc, group)
	}
	if fw.err != nil {
		return nil, storageErr(groupOp(group), fw.err)
	}
	fileTime := time.Since(t) / time.Duration(len(group)) // what validation did not hide of the write
	g.blocks, g.applied, g.reps = group, applied, reps
	g.locs, g.hashes = fw.locs[:len(group)], fw.hashes[:len(group)]
	for i := range reps {
		reps[i].Bytes, reps[i].BlockFile = fw.sizes[i], fileTime
		g.bytes += fw.sizes[i]
	}
	if g.persist = def.due(len(group), g.bytes, t); !g.persist {
		g.after = def.add(len(group), g.bytes, t)
	}
	s.tail = g
	return g, rejected
}

// WaitCommits returns once every group staged so far has committed (or
// failed to). thread-safe.
func (s *Store) WaitCommits() {
	s.stageMu.Lock()
	tail := s.tail
	s.stageMu.Unlock()
	if tail != nil {
		<-tail.done
	}
}

// groupOp names the apply of a group in errors.
func groupOp(group []*block.Block) string {
	first, last := group[0].Header.Number, group[len(group)-1].Header.Number
	if last != first {
		return fmt.Sprintf("apply blocks %d..%d", first, last)
	}
	return fmt.Sprintf("apply block %d", first)
}

// Commit commits a group Stage made, once the group it was staged on (if
// any) has ended its Commit: one SQLite transaction (the commit point),
// then the state database batch, then the publish. It returns the blocks'
// reports. A group staged on one that did not commit (or on a state that
// another write replaced since) commits nothing and returns ErrStaleGroup:
// stage its blocks again. Any other error (I/O) commits none of the group.
// Each group is committed once. thread-safe: commits are serialised, in
// the order of their groups.
func (s *Store) Commit(ctx context.Context, g *Staged) ([]Report, error) {
	defer close(g.done)
	if g.parent != nil {
		<-g.parent.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	op := groupOp(g.blocks)
	cur := s.snap.Load()
	on := g.base
	if g.parent != nil {
		on = g.parent.published
	}
	if on == nil || cur.State != on || s.state.tip+uint64(s.state.deferred.blocks) != cur.Committed() {
		return nil, fmt.Errorf("%s: %w", op, ErrStaleGroup)
	}
	group, applied, reps, last := g.blocks, g.applied, g.reps, g.blocks[len(g.blocks)-1].Header.Number

	t := time.Now()
	if err := s.commitBlocks(ctx, group, applied, g.locs, g.hashes, cur); err != nil {
		// The blocks' bytes stay in their files past the committed end: a
		// retry of the same blocks writes them again at the same offsets,
		// and Open cuts them if none comes. They are not cut here: a commit
		// whose fsync failed may still be on disk, and would then need them.
		return nil, storageErr(op, err)
	}
	sqliteTime := time.Since(t)
	s.blockLocs.put(group[0].Header.Number, g.locs)

	// Committed. The state batch follows; should the disk refuse it, the
	// snapshot keeps the trees in memory and the next Stage (or Open)
	// writes the batch again from the block files before anything else.
	// The trees' nodes are written only once every few blocks (see
	// stateDeferBlocks), and then after the publish: readers and the tip
	// do not wait for them.
	t = time.Now()
	st := *applied[len(applied)-1].State
	st.Chain = st.Chain.Persisted(s.mmr)
	notes := make([]blockNotes, len(group))
	for i, b := range group {
		notes[i] = blockNotes{n: b.Header.Number, ids: applied[i].NoteIDs, notes: b.Body.Notes}
	}
	_, _, err := s.writeState(last, st.Accounts, st.Nullifiers, notes, false, t)
	if err == nil {
		s.state.deferred = s.state.deferred.add(len(group), g.bytes, t)
	}
	stateTime := time.Since(t)

	k := time.Duration(len(reps))
	for i := range reps {
		reps[i].SQLite = sqliteTime / k
		reps[i].Group = len(reps)
	}
	sn := &Snapshot{
		st:         s,
		State:      &st,
		Proven:     cur.Proven,
		tipLoc:     g.locs[len(g.locs)-1],
		proofLoc:   cur.proofLoc,
		ApplyStart: reps[0].Start,
	}
	s.publish(sn)
	if err == nil && g.persist {
		t = time.Now()
		if s.persistDeferred(sn, t) == nil {
			reps[len(reps)-1].Nodes, reps[len(reps)-1].Pruned = s.state.lastNodes, s.state.lastPruned
		}
		stateTime += time.Since(t)
	}
	for i := range reps {
		reps[i].State = stateTime / k
	}
	g.published = s.snap.Load().State
	return reps, nil
}

// persistDeferred writes the trees of sn, the published snapshot, with the
// nodes of every block deferred since the last write, and puts the same
// snapshot reading them from the state database in its place: the tips do
// not move, so no one is woken. A failure leaves the trees in memory and
// the deferred blocks to be replayed from their files (catchUpState).
// CONTRACT: s.mu must be locked.
func (s *Store) persistDeferred(sn *Snapshot, now time.Time) error {
	if s.state.deferred.blocks == 0 {
		return nil
	}
	acc, nul, err := s.writeState(sn.Committed(), sn.State.Accounts, sn.State.Nullifiers, nil, true, now)
	if err != nil {
		return err
	}
	st := *sn.State
	st.Accounts, st.Nullifiers = acc, nul
	next := *sn
	next.State = &st
	// Not publish: the tips and what a read returns are the same. Every
	// publish holds s.mu, so sn is still the one readers load.
	s.snap.Store(&next)
	return nil
}

// opensSegment reports whether blocks include the first of a segment.
func opensSegment(blocks []*block.Block) bool {
	first := blocks[0].Header.Number
	return first%SegmentSpan == 0 || first%SegmentSpan+uint64(len(blocks)) > SegmentSpan
}

// fileWrite is what writeBlockFiles did.
type fileWrite struct {
	locs   []loc
	hashes []merkle.Hash
	sizes  []int
	err    error
}

// writeBlockFiles writes the encoded blocks after tip (the committed tip's
// location) with one write and fdatasync per segment, and returns where
// each block lies, its bytes' hash and its size. A failed write gives back
// what the group's writes took; nothing of SQLite was touched yet.
// CONTRACT: s.mu must be locked, and no other write of the files run.
func (s *Store) writeBlockFiles(tip loc, group []*block.Block) fileWrite {
	items := make([][]byte, len(group))
	fw := fileWrite{hashes: make([]merkle.Hash, len(group)), sizes: make([]int, len(group))}
	for i, b := range group {
		items[i] = b.Encode()
		fw.hashes[i] = merkle.Sum(items[i])
		fw.sizes[i] = len(items[i])
	}
	fw.locs, fw.err = s.blocks.writeItems(group[0].Header.Number, tip.end(), func(uint64) bool { return false }, items)
	return fw
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
	if s.state.tip+uint64(s.state.deferred.blocks) == cur.Committed() {
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
	s.state.deferred = deferral{}
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

// commitBlocks runs the group's SQLite transaction, the commit point: every
// block's rows, the MMR nodes the group added, and the committed tip moved
// from parent to the last block. CONTRACT: s.mu must be locked.
func (s *Store) commitBlocks(ctx context.Context, group []*block.Block, applied []*state.Applied, locs []loc, hashes []merkle.Hash, cur *Snapshot) error {
	// Once begun, the transaction is not abandoned halfway because the
	// caller's context ended: either it commits or it rolls back.
	ctx = context.WithoutCancel(ctx)
	if err := s.w.begin(ctx); err != nil {
		return fmt.Errorf("sqlite begin: %w", err)
	}
	var err error
	for i, b := range group {
		if err = s.insertBlockRows(ctx, b, applied[i], locs[i], hashes[i]); err != nil {
			break
		}
	}
	if err == nil {
		// Each block's MMR grew from the one before, all from the committed
		// tip's (through a group staged before, perhaps): the last holds
		// every node the group added.
		err = s.insertMMRNodes(ctx, applied[len(applied)-1].State.Chain, cur.State.Chain)
	}
	last := group[len(group)-1].Header.Number
	if err == nil {
		err = execOne(ctx, s.w.setCommitted, "set committed tip", last, cur.Committed())
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

// insertBlockRows writes the block's row and its notes' (not the MMR's, not
// the tips). CONTRACT: s.mu must be locked and a transaction open.
func (s *Store) insertBlockRows(ctx context.Context, b *block.Block, a *state.Applied, l loc, fileHash merkle.Hash) error {
	n := b.Header.Number
	c := a.State.Commitment
	if _, err := s.w.insBlock.ExecContext(ctx, n, c[:], b.Header.Encode(), l.off, l.len, fileHash[:]); err != nil {
		return fmt.Errorf("insert block %d row: %w", n, err)
	}
	body := &b.Body
	if err := s.w.insNote.insert(ctx, len(body.Notes), func(i int, args []any) []any {
		nt := &body.Notes[i]
		id := &a.NoteIDs[i]
		return append(args, notePos(n, uint32(i)), nt.Tag, id[:], nt.Sender[:], nt.Details)
	}); err != nil {
		return fmt.Errorf("insert block %d notes: %w", n, err)
	}
	return nil
}

// insertMMRNodes writes the nodes of chain not yet in SQLite: those past
// stored, the MMR it grew from whose nodes are (nil: none are).
// CONTRACT: s.mu must be locked and a transaction open.
func (s *Store) insertMMRNodes(ctx context.Context, chain, stored *merkle.MMR) error {
	first, nodes := chain.Since(stored)
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
	verify := func(snap *Snapshot) error {
		for i, p := range proofs {
			n := first + uint64(i)
			c, err := snap.State.Chain.LeafAt(n)
			if err != nil {
				return storageErr(fmt.Sprintf("apply proof %d: read block commitment", n), err)
			}
			if err := s.verifier.VerifyProof(n, c, p); err != nil {
				return fmt.Errorf("apply proof %d: %w", n, err)
			}
		}
		return nil
	}
	// Verified before taking the writer's lock, so that the checks do not
	// hold up a commit: a committed block's commitment never changes, so
	// what passes on this snapshot passes on the one the write follows.
	verified := false
	if pre := s.snap.Load(); first == pre.Proven+1 && last <= pre.Committed() {
		if err := verify(pre); err != nil {
			return err
		}
		verified = true
	}
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
	if !verified {
		if err := verify(cur); err != nil {
			return err
		}
	}
	// The proof of block 1 opens the first segment: genesis has none.
	locs, err := s.proofs.writeItems(first, cur.proofLoc.end(), func(n uint64) bool { return n == 1 }, proofs)
	if err != nil {
		return storageErr(fmt.Sprintf("apply proofs %d..%d", first, last), err)
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.w.begin(ctx); err != nil {
		return storageErr(fmt.Sprintf("apply proofs %d..%d: sqlite begin", first, last), err)
	}
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
	s.proofLocs.put(first, locs)
	s.publish(&Snapshot{
		st:       s,
		State:    cur.State,
		Proven:   last,
		tipLoc:   cur.tipLoc,
		proofLoc: locs[len(locs)-1],
	})
	return nil
}
