package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
)

// A read of a block or proof other than the tip's needs its location in its
// segment, a row of SQLite: a query of tens of microseconds through cgo,
// for a read that is otherwise one pread. A follower catching up reads the
// chain in order, block and proof, one call each; a caught-up one reads
// what was just committed. locIndex keeps the locations of the items
// committed or read last, so that both cost no query: the commit puts the
// locations it wrote, and a reader going through the items in order reads
// the rows ahead of it in one query.
//
// A location never changes once its row is committed (rows are only
// inserted), so an entry is right for every snapshot that holds its item;
// entries come only from committed rows and committed groups.

// locIndexSlots is how many locations each index holds (blocks and proofs
// apart): 4,096 entries of 24 bytes, about 100 KB each. Item n lives in
// slot n mod locIndexSlots, so the index holds the last 4,096 committed and
// a reader's run ahead.
const locIndexSlots = 4096

// locReadAhead is how many rows a reader going in order reads at once.
const locReadAhead = 256

type locIndex struct {
	// immutable after construction
	kind  string                                           // "block" or "proof", for errors
	one   func(ctx context.Context, n uint64) (loc, error) // one row: Store.blockLoc or proofLoc
	ahead string                                           // the query of a run of rows

	mu    sync.Mutex
	slots []locSlot

	queries atomic.Int64 // SQLite queries made, for tests
}

type locSlot struct {
	n   uint64 // item number + 1; 0: empty
	loc loc
}

func newLocIndex(kind, table string, one func(context.Context, uint64) (loc, error)) *locIndex {
	return &locIndex{
		kind:  kind,
		one:   one,
		ahead: `SELECT number, file_offset, file_length FROM ` + table + ` WHERE number >= ? AND number <= ? ORDER BY number`,
		slots: make([]locSlot, locIndexSlots),
	}
}

func (x *locIndex) get(n uint64) (loc, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.slots[n%uint64(len(x.slots))]
	return s.loc, s.n == n+1
}

// put remembers that items first, first+1, ... lie at locs.
func (x *locIndex) put(first uint64, locs []loc) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, l := range locs {
		n := first + uint64(i)
		x.slots[n%uint64(len(x.slots))] = locSlot{n: n + 1, loc: l}
	}
}

// lookup returns where item n lies, n at most last (the reader's tip, so
// that its row is committed). On a miss it queries SQLite: the rows from n
// up to locReadAhead ahead (not past last) when item n-1 is in the index
// (the reader goes in order), else n's row alone.
func (x *locIndex) lookup(ctx context.Context, db *sql.DB, n, last uint64) (loc, error) {
	if l, ok := x.get(n); ok {
		return l, nil
	}
	x.queries.Add(1)
	end := min(n+locReadAhead-1, last)
	inOrder := false
	if n > 0 {
		_, inOrder = x.get(n - 1)
	}
	if !inOrder || end <= n {
		l, err := x.one(ctx, n)
		if err != nil {
			return l, err
		}
		x.put(n, []loc{l})
		return l, nil
	}
	rows, err := db.QueryContext(ctx, x.ahead, n, end)
	if err != nil {
		return loc{}, fmt.Errorf("read %s %d..%d locations: %w", x.kind, n, end, err)
	}
	defer rows.Close()
	locs := make([]loc, 0, end-n+1)
	for rows.Next() {
		var m uint64
		var l loc
		if err := rows.Scan(&m, &l.off, &l.len); err != nil {
			return loc{}, fmt.Errorf("read %s %d..%d locations: %w", x.kind, n, end, err)
		}
		if m != n+uint64(len(locs)) {
			break // a gap: what follows it is not taken
		}
		locs = append(locs, l)
	}
	if err := rows.Err(); err != nil {
		return loc{}, fmt.Errorf("read %s %d..%d locations: %w", x.kind, n, end, err)
	}
	if len(locs) == 0 {
		return loc{}, fmt.Errorf("%w: %s %d has no row in the database", ErrDamaged, x.kind, n)
	}
	x.put(n, locs)
	return locs[0], nil
}
