package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver: cgo, the fastest of those served
)

// schemaVersion is stored in meta; Open refuses a database of another version.
const schemaVersion = "3"

// schema: the SQLite half of the store. Every table is append-only except
// tips; the tips row is updated in the same transaction as the rows of the
// block it names, which makes that transaction's commit the store's single
// commit point. The accounts and nullifiers live in their trees, in the
// state database.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tips (
	id        INTEGER PRIMARY KEY CHECK (id = 1),
	committed INTEGER NOT NULL,
	proven    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
	number      INTEGER PRIMARY KEY,
	commitment  BLOB NOT NULL,
	header      BLOB NOT NULL,
	file_offset INTEGER NOT NULL,
	file_length INTEGER NOT NULL,
	file_hash   BLOB NOT NULL
);
-- Notes are appended in chain order (pos = block << 20 | index): a block
-- dirties only the pages at the table's end. Their indexes by ID and by tag,
-- whose keys land anywhere, live in the state database.
CREATE TABLE IF NOT EXISTS notes (
	pos       INTEGER PRIMARY KEY,
	tag       INTEGER NOT NULL,
	id        BLOB NOT NULL,
	sender    BLOB NOT NULL,
	details   BLOB NOT NULL
);
-- The nodes of the MMR of block commitments by post-order position: written
-- once, in order, in the transaction of the block that appends them.
CREATE TABLE IF NOT EXISTS mmr (
	pos  INTEGER PRIMARY KEY,
	hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS proofs (
	number      INTEGER PRIMARY KEY,
	file_offset INTEGER NOT NULL,
	file_length INTEGER NOT NULL
);
`

// maxConns bounds SQLite's connections (the writer's and readers'); each
// has its own page cache, a share of Options.SQLiteCacheBytes.
const maxConns = 8

// openDB opens the database in WAL mode with full sync: a commit is on disk
// when it returns, so a committed tip survives power loss, not just a crash.
func openDB(dir string, cacheBytes int64) (*sql.DB, error) {
	dsn := "file:" + filepath.Join(dir, "store.db") +
		fmt.Sprintf("?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_txlock=immediate&_cache_size=-%d", max(cacheBytes/maxConns>>10, 1024))
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database: create schema: %w", err)
	}
	return db, nil
}

// writer holds the one connection that writes, with its statements prepared
// once: per-block work is then only binding and stepping.
type writer struct {
	conn                              *sql.Conn
	insBlock                          *sql.Stmt
	insProof, setCommitted, setProven *sql.Stmt
	insNote, insMMR                   *batch
}

// batchSizes are the row counts of the multi-row INSERTs prepared for each
// table. A block's rows go in as few statements as possible: per statement,
// database/sql and cgo cost more than SQLite's own work on a row.
var batchSizes = []int{64, 8, 1}

// batch inserts rows through multi-row statements of batchSizes rows.
type batch struct {
	cols  int
	stmts []*sql.Stmt // one per batchSizes entry
	args  []any       // reused between calls
}

func prepareBatch(ctx context.Context, conn *sql.Conn, head string, cols int, tail string) (*batch, error) {
	row := "(?" + strings.Repeat(", ?", cols-1) + ")"
	b := &batch{cols: cols}
	for _, n := range batchSizes {
		q := head + " VALUES " + row + strings.Repeat(", "+row, n-1) + " " + tail
		st, err := conn.PrepareContext(ctx, q)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("prepare %q: %w", head, err)
		}
		b.stmts = append(b.stmts, st)
	}
	return b, nil
}

// insert runs rows(i, args) for i in [0, n) (each appends one row's cols
// values to args) and writes them in batches.
func (b *batch) insert(ctx context.Context, n int, row func(i int, args []any) []any) error {
	i := 0
	for k, size := range batchSizes {
		for ; n-i >= size; i += size {
			b.args = b.args[:0]
			for j := i; j < i+size; j++ {
				b.args = row(j, b.args)
			}
			if _, err := b.stmts[k].ExecContext(ctx, b.args...); err != nil {
				return fmt.Errorf("rows %d..%d: %w", i, i+size-1, err)
			}
		}
	}
	return nil
}

func (b *batch) close() {
	for _, st := range b.stmts {
		st.Close()
	}
}

func newWriter(ctx context.Context, db *sql.DB) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open writer connection: %w", err)
	}
	w := &writer{conn: conn}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&w.insBlock, `INSERT INTO blocks (number, commitment, header, file_offset, file_length, file_hash) VALUES (?, ?, ?, ?, ?, ?)`},
		{&w.insProof, `INSERT INTO proofs (number, file_offset, file_length) VALUES (?, ?, ?)`},
		{&w.setCommitted, `UPDATE tips SET committed = ? WHERE id = 1 AND committed = ?`},
		{&w.setProven, `UPDATE tips SET proven = ? WHERE id = 1 AND proven = ?`},
	} {
		st, err := conn.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("prepare %q: %w", p.sql, err)
		}
		*p.st = st
	}
	for _, p := range []struct {
		b          **batch
		head, tail string
		cols       int
	}{
		{&w.insNote, `INSERT INTO notes (pos, tag, id, sender, details)`, ``, 5},
		{&w.insMMR, `INSERT INTO mmr (pos, hash)`, ``, 2},
	} {
		b, err := prepareBatch(ctx, conn, p.head, p.cols, p.tail)
		if err != nil {
			w.close()
			return nil, err
		}
		*p.b = b
	}
	return w, nil
}

func (w *writer) close() error {
	for _, st := range []*sql.Stmt{w.insBlock, w.insProof, w.setCommitted, w.setProven} {
		if st != nil {
			st.Close()
		}
	}
	for _, b := range []*batch{w.insNote, w.insMMR} {
		if b != nil {
			b.close()
		}
	}
	return w.conn.Close()
}

// The writer runs its transactions as plain BEGIN/COMMIT on its own
// connection: database/sql's Tx would re-prepare connection-bound
// statements on every transaction.

func (w *writer) begin(ctx context.Context) error {
	_, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	return err
}

func (w *writer) commit(ctx context.Context) error {
	_, err := w.conn.ExecContext(ctx, "COMMIT")
	return err
}

// rollback undoes an unfinished transaction. The context is not the
// caller's: a rollback must run even when the caller gave up.
func (w *writer) rollback() {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
}

// execOne runs a statement that must change exactly one row; the tips
// updates rely on it as a guard against a second writer.
func execOne(ctx context.Context, st *sql.Stmt, what string, args ...any) error {
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%s: changed %d rows, want 1 (another writer?)", what, n)
	}
	return nil
}
