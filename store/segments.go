package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// SegmentSpan is how many consecutive blocks (or proofs) share one file.
// Appending to a segment needs one fdatasync per block, where a file per
// block would also need a directory fsync; and it keeps the directory small
// for long chains. 4096 `large` blocks make a segment of about 4.5 GB.
const SegmentSpan = 4096

// loc is where one item lives in its segment.
type loc struct {
	off uint64
	len uint32
}

func (l loc) end() uint64 { return l.off + uint64(l.len) }

// segments is a family of append-only files holding items 0, 1, 2, ... in
// order: blocks or proofs. Item n lives in segment n/SegmentSpan.
//
// Writes come from the store's single writer; ReadAt is safe concurrently
// with them (it only reads committed ranges).
type segments struct {
	dir  string
	kind string // "block" or "proof", for errors

	mu    sync.Mutex // guards files
	files map[uint64]*os.File
}

func openSegments(dir, kind string) (*segments, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open %s files: %w", kind, err)
	}
	return &segments{dir: dir, kind: kind, files: map[uint64]*os.File{}}, nil
}

func (s *segments) path(seg uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%08d.seg", seg))
}

// file returns the open segment, opening (and if create, creating) it.
// thread-safe.
func (s *segments) file(seg uint64, create bool) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[seg]; ok {
		return f, nil
	}
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(s.path(seg), flags, 0o644)
	if err != nil {
		return nil, err
	}
	if create {
		// The new directory entry must be durable before any block in it
		// is committed.
		if err := syncDir(s.dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	s.files[seg] = f
	return f, nil
}

// write stores item n at off and makes it durable. Bytes left past the
// item by an attempt that failed to commit are not cut here: reads never
// look past committed items, the next write overwrites them, and recover
// cuts whatever remains at the next Open.
func (s *segments) write(n uint64, off uint64, data []byte) error {
	f, err := s.file(n/SegmentSpan, true)
	if err != nil {
		return fmt.Errorf("write %s %d: %w", s.kind, n, err)
	}
	if _, err := f.WriteAt(data, int64(off)); err != nil {
		return fmt.Errorf("write %s %d to %s: %w", s.kind, n, f.Name(), err)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("write %s %d: fsync %s: %w", s.kind, n, f.Name(), err)
	}
	return nil
}

// writeItems writes items first, first+1, ... after the item that ends at
// end (an item for which starts is true begins its segment at 0 instead),
// with one write and fdatasync per segment, and returns where each lies. A
// failed write gives back what the writes took.
func (s *segments) writeItems(first, end uint64, starts func(n uint64) bool, items [][]byte) ([]loc, error) {
	locs := make([]loc, len(items))
	type run struct{ n, off uint64 }
	var written []run
	for i := 0; i < len(items); {
		// Items i..j-1 share a segment: one write.
		n := first + uint64(i)
		j := min(len(items), i+int(SegmentSpan-n%SegmentSpan))
		off := end
		switch {
		case n%SegmentSpan == 0 || starts(n):
			off = 0
		case i > 0:
			off = locs[i-1].end()
		}
		size := 0
		for _, it := range items[i:j] {
			size += len(it)
		}
		buf := make([]byte, 0, size) // one allocation: grown by append, a group's bytes were copied about twice
		for k := i; k < j; k++ {
			locs[k] = loc{off: off + uint64(len(buf)), len: uint32(len(items[k]))}
			buf = append(buf, items[k]...)
		}
		written = append(written, run{n, off})
		if err := s.write(n, off, buf); err != nil {
			for _, r := range written {
				s.cut(r.n, r.off)
			}
			return nil, err
		}
		i = j
	}
	return locs, nil
}

// cut drops whatever lies at or past off in item n's segment: the bytes of
// a write that failed. Best effort: Open cuts them anyway, and a later write
// of item n overwrites them.
func (s *segments) cut(n uint64, off uint64) {
	s.mu.Lock()
	f := s.files[n/SegmentSpan]
	s.mu.Unlock()
	if f != nil {
		_ = f.Truncate(int64(off))
	}
}

// read returns item n. thread-safe.
func (s *segments) read(n uint64, l loc) ([]byte, error) {
	f, err := s.file(n/SegmentSpan, false)
	if err != nil {
		return nil, fmt.Errorf("read %s %d: %w", s.kind, n, err)
	}
	buf := make([]byte, l.len)
	if _, err := f.ReadAt(buf, int64(l.off)); err != nil {
		return nil, fmt.Errorf("read %s %d from %s: %w", s.kind, n, f.Name(), err)
	}
	return buf, nil
}

// recover makes the files match the committed items first..last (none if
// !have): it checks that every segment holding committed items exists and
// is long enough for its last one, cuts what lies past the last committed
// item (written before a crash, never committed) and removes later
// segments. locOf says where a committed item lies; it is asked once per
// segment, so the work grows with the segments, not the items.
func (s *segments) recover(first, last uint64, have bool, locOf func(n uint64) (loc, error)) error {
	var lastSeg uint64 // segment of the last committed item
	if have {
		lastSeg = last / SegmentSpan
		for seg := first / SegmentSpan; seg <= lastSeg; seg++ {
			n := min((seg+1)*SegmentSpan-1, last) // the segment's last committed item
			l, err := locOf(n)
			if err != nil {
				return err
			}
			end := l.end()
			path := s.path(seg)
			st, err := os.Stat(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s file %s holding committed %s %d is missing", ErrDamaged, s.kind, path, s.kind, n)
			}
			if err != nil {
				return fmt.Errorf("recover %s files: %w", s.kind, err)
			}
			if uint64(st.Size()) < end {
				return fmt.Errorf("%w: %s file %s is %d bytes, committed %s %d ends at byte %d", ErrDamaged, s.kind, path, st.Size(), s.kind, n, end)
			}
			if seg == lastSeg && uint64(st.Size()) > end {
				// Written before a crash, never committed.
				if err := os.Truncate(path, int64(end)); err != nil {
					return fmt.Errorf("recover %s files: cut %s: %w", s.kind, path, err)
				}
			}
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("recover %s files: %w", s.kind, err)
	}
	for _, e := range entries {
		var seg uint64
		if _, err := fmt.Sscanf(e.Name(), "%08d.seg", &seg); err != nil {
			continue
		}
		if !have || seg > lastSeg {
			// Written before a crash, nothing in it committed.
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil {
				return fmt.Errorf("recover %s files: %w", s.kind, err)
			}
		}
	}
	return nil
}

func (s *segments) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for seg, f := range s.files {
		errs = append(errs, f.Close())
		delete(s.files, seg)
	}
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
