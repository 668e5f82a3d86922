// Package state is the chain's state transition as pure logic: given the
// state after block n (its header, the account and nullifier trees and the
// MMR of block commitments) and block n+1, it checks every rule and computes
// the state after n+1, or says precisely which rule the block broke. It does
// no I/O; the store wraps it with files and SQLite, the producer uses Build
// to make blocks that pass it.
//
// States are immutable values that share structure (the trees are
// persistent), so a reader can keep using the state it took while the next
// one is computed.
package state

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"storesync/block"
	"storesync/genesis"
	"storesync/merkle"
)

// State is the chain state after block Header.Number.
type State struct {
	Header     block.Header
	Commitment merkle.Hash // Header.Commitment(), kept to avoid rehashing
	Accounts   *merkle.SMT // account id -> state commitment
	Nullifiers *merkle.SMT // nullifier -> NullifierValue(block that spent it)
	Chain      *merkle.MMR // commitments of blocks 0..Header.Number
	// PrevChain is Chain without the tip: the MMR the tip header's chain
	// commitment is the root of, so proofs against it verify with the header.
	PrevChain *merkle.MMR
}

// Rules are the chain parameters that validation needs from genesis.
type Rules struct {
	Producer ed25519.PublicKey
}

// RulesOf returns the rules of a genesis file.
func RulesOf(g *genesis.File) Rules { return Rules{Producer: g.Producer()} }

// Genesis returns the state after the genesis block.
func Genesis(g *genesis.File) *State {
	b := g.Block()
	kvs := make([]merkle.KV, len(b.Body.Accounts))
	for i, a := range b.Body.Accounts {
		kvs[i] = merkle.KV{Key: a.ID, Value: a.Commitment}
	}
	c := b.Header.Commitment()
	return &State{
		Header:     b.Header,
		Commitment: c,
		Accounts:   merkle.BuildSMT(kvs),
		Nullifiers: merkle.NewSMT(),
		Chain:      (&merkle.MMR{}).Append(c),
		PrevChain:  &merkle.MMR{},
	}
}

// NullifierValue is the value stored for a spent nullifier: the number of the
// block that spent it (never zero, since genesis spends nothing).
func NullifierValue(spentAt uint64) merkle.Hash {
	var h merkle.Hash
	binary.LittleEndian.PutUint64(h[:], spentAt)
	return h
}

// SpentAt decodes a NullifierValue.
func SpentAt(v merkle.Hash) uint64 { return binary.LittleEndian.Uint64(v[:]) }

// Applied is the result of a successful Apply: the new state and what the
// store must persist beyond the block itself.
type Applied struct {
	State   *State
	NoteIDs []merkle.Hash // IDs of the block's notes, in order
	// Time spent in the checks themselves and in computing the new trees
	// (which the root checks need), reported per stage by the store.
	Validate, Trees time.Duration
}

// Apply validates b on top of s and returns the state after it. s is not
// changed. Checks run cheapest first, so a forged block costs little.
func (s *State) Apply(b *block.Block, rules Rules) (*Applied, error) {
	start := time.Now()
	h := &b.Header
	want := s.Header.Number + 1
	if h.Version != block.Version {
		return nil, reject(want, CheckVersion, "header version %d, want %d", h.Version, block.Version)
	}
	if h.Number != want {
		return nil, reject(want, CheckNumber, "got block %d, want %d", h.Number, want)
	}
	if h.PrevCommitment != s.Commitment {
		return nil, reject(want, CheckPrevCommitment, "header names %s, block %d is %s", h.PrevCommitment.Short(), s.Header.Number, s.Commitment.Short())
	}
	if h.Timestamp < s.Header.Timestamp {
		return nil, reject(want, CheckTimestamp, "timestamp %d is before block %d's %d", h.Timestamp, s.Header.Number, s.Header.Timestamp)
	}
	if err := b.VerifySignature(rules.Producer); err != nil {
		r := reject(want, CheckSignature, "%v", err)
		r.Cause = err
		return nil, r
	}
	// The note IDs and root on one core, the transaction commitment and the
	// body checks on the other; the verdicts are then read in check order.
	var ids []merkle.Hash
	var noteRoot merkle.Hash
	notesDone := make(chan struct{})
	go func() {
		ids = b.NoteIDs()
		noteRoot = block.NoteRoot(ids)
		close(notesDone)
	}()
	txc := b.Body.TxCommitment()
	bodyErr := s.checkBody(b)
	<-notesDone
	if txc != h.TxCommitment {
		return nil, reject(want, CheckTxCommitment, "header has %s, transactions hash to %s", h.TxCommitment.Short(), txc.Short())
	}
	if noteRoot != h.NoteRoot {
		return nil, reject(want, CheckNoteRoot, "header has %s, notes hash to %s", h.NoteRoot.Short(), noteRoot.Short())
	}
	if bodyErr != nil {
		return nil, bodyErr
	}
	if c := s.Chain.Root(); c != h.ChainCommitment {
		return nil, reject(want, CheckChainCommitment, "header has %s, chain of blocks 0..%d is %s", h.ChainCommitment.Short(), s.Header.Number, c.Short())
	}
	treesStart := time.Now()
	accounts, nullifiers, err := NextTrees(s.Accounts, s.Nullifiers, b)
	if err != nil {
		return nil, fmt.Errorf("update trees: %w", err)
	}
	chain := s.Chain.Append(h.Commitment())
	treesEnd := time.Now()
	if r := accounts.Root(); r != h.AccountRoot {
		return nil, reject(want, CheckAccountRoot, "header has %s, updates give %s", h.AccountRoot.Short(), r.Short())
	}
	if r := nullifiers.Root(); r != h.NullifierRoot {
		return nil, reject(want, CheckNullifierRoot, "header has %s, nullifiers give %s", h.NullifierRoot.Short(), r.Short())
	}
	return &Applied{
		State:    &State{Header: *h, Commitment: chain.Leaf(h.Number), Accounts: accounts, Nullifiers: nullifiers, Chain: chain, PrevChain: s.Chain},
		NoteIDs:  ids,
		Validate: treesStart.Sub(start),
		Trees:    treesEnd.Sub(treesStart),
	}, nil
}

// checkBody enforces the canonical body (sorted, unique account updates with
// non-zero commitments; sorted nullifiers) and rejects nullifiers already
// spent, before any tree is touched.
func (s *State) checkBody(b *block.Block) error {
	n := b.Header.Number
	for i, a := range b.Body.Accounts {
		if a.Commitment.IsZero() {
			return reject(n, CheckBody, "account update %d (%s) has a zero commitment", i, a.ID.Short())
		}
		if i > 0 {
			if c := bytes.Compare(b.Body.Accounts[i-1].ID[:], a.ID[:]); c >= 0 {
				what := "out of order"
				if c == 0 {
					what = "duplicated"
				}
				return reject(n, CheckBody, "account update %d (%s) is %s", i, a.ID.Short(), what)
			}
		}
	}
	// The order first, then the tree: the lookups, most of a large block's
	// validation on a big state (they read the nodes below the cache from
	// the state database), run on every core, and the first failure in
	// the block's order is the one reported, as one after another would.
	nfs := b.Body.Nullifiers
	var orderErr error
	for i := 1; i < len(nfs) && orderErr == nil; i++ {
		switch c := bytes.Compare(nfs[i-1][:], nfs[i][:]); {
		case c == 0:
			orderErr, nfs = reject(n, CheckDoubleSpend, "nullifier %s appears twice in the block", nfs[i].Short()), nfs[:i]
		case c > 0:
			orderErr, nfs = reject(n, CheckBody, "nullifier %d (%s) is out of order", i, nfs[i].Short()), nfs[:i]
		}
	}
	type spent struct {
		v   merkle.Hash
		ok  bool
		err error
	}
	found := make([]spent, len(nfs))
	lookup := func(from, to int) {
		for i := from; i < to; i++ {
			found[i].v, found[i].ok, found[i].err = s.Nullifiers.TryGet(nfs[i])
		}
	}
	if parts := min(runtime.GOMAXPROCS(0), len(nfs)/parallelLookups); parts > 1 {
		var wg sync.WaitGroup
		for p := range parts {
			wg.Go(func() { lookup(p*len(nfs)/parts, (p+1)*len(nfs)/parts) })
		}
		wg.Wait()
	} else {
		lookup(0, len(nfs))
	}
	for i, f := range found {
		if f.err != nil {
			return fmt.Errorf("check nullifier %s of block %d: %w", nfs[i].Short(), n, f.err)
		}
		if f.ok {
			return reject(n, CheckDoubleSpend, "nullifier %s was already spent in block %d", nfs[i].Short(), SpentAt(f.v))
		}
	}
	return orderErr
}

// parallelLookups is the fewest nullifier lookups worth a goroutine.
const parallelLookups = 128

// NextTrees returns the account and nullifier trees after b's updates; they
// are independent, so they are built on both cores. It checks nothing: the
// error is a failed read of a stored tree's nodes.
func NextTrees(accounts, nullifiers *merkle.SMT, b *block.Block) (*merkle.SMT, *merkle.SMT, error) {
	akv := make([]merkle.KV, len(b.Body.Accounts))
	for i, a := range b.Body.Accounts {
		akv[i] = merkle.KV{Key: a.ID, Value: a.Commitment}
	}
	nkv := make([]merkle.KV, len(b.Body.Nullifiers))
	v := NullifierValue(b.Header.Number)
	for i, nf := range b.Body.Nullifiers {
		nkv[i] = merkle.KV{Key: nf, Value: v}
	}
	var nextN *merkle.SMT
	var errN error
	done := make(chan struct{})
	go func() {
		nextN, errN = nullifiers.TryUpdate(nkv)
		close(done)
	}()
	nextA, errA := accounts.TryUpdate(akv)
	<-done
	if err := errors.Join(errA, errN); err != nil {
		return nil, nil, err
	}
	return nextA, nextN, nil
}

// Build completes a block for the given body on top of s: it fills every
// header field that the body and state determine, and signs it. The body must
// be canonical (see checkBody); Build sorts account updates and nullifiers.
func (s *State) Build(body block.Body, timestamp uint64, key ed25519.PrivateKey) (*block.Block, error) {
	sortBody(&body)
	if timestamp < s.Header.Timestamp {
		timestamp = s.Header.Timestamp
	}
	b := &block.Block{Body: body}
	h := &b.Header
	h.Version = block.Version
	h.Number = s.Header.Number + 1
	h.PrevCommitment = s.Commitment
	h.ChainCommitment = s.Chain.Root()
	h.Timestamp = timestamp
	h.TxCommitment = body.TxCommitment()
	h.NoteRoot = block.NoteRoot(b.NoteIDs())
	if err := s.checkBody(b); err != nil {
		return nil, fmt.Errorf("build block %d: %w", h.Number, err)
	}
	accounts, nullifiers, err := NextTrees(s.Accounts, s.Nullifiers, b)
	if err != nil {
		return nil, fmt.Errorf("build block %d: %w", h.Number, err)
	}
	h.AccountRoot = accounts.Root()
	h.NullifierRoot = nullifiers.Root()
	b.Sign(key)
	return b, nil
}

func sortBody(b *block.Body) {
	slices.SortFunc(b.Accounts, func(x, y block.AccountUpdate) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	slices.SortFunc(b.Nullifiers, func(x, y merkle.Hash) int { return bytes.Compare(x[:], y[:]) })
}
