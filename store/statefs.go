package store

import (
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// trackingFS is the file system the state database runs on: the OS's, with
// every file it opens remembered until closed. Pebble's Close gives up on
// the first file that fails to flush (its memtable's log file on a disk
// turned read-only) and leaves the rest open, which would keep the store's
// file system busy after the store is closed; closeLeft closes them.
type trackingFS struct {
	vfs.FS
	mu    sync.Mutex
	open  map[*trackedFile]struct{}
	locks map[*trackedLock]struct{}
}

func newTrackingFS() *trackingFS {
	return &trackingFS{FS: vfs.Default, open: map[*trackedFile]struct{}{}, locks: map[*trackedLock]struct{}{}}
}

type trackedFile struct {
	vfs.File
	fs   *trackingFS
	once sync.Once
}

// Close closes the file once; later calls (closeLeft after Pebble's own)
// do nothing.
func (f *trackedFile) Close() error {
	var err error
	f.once.Do(func() {
		err = f.File.Close()
		f.fs.mu.Lock()
		delete(f.fs.open, f)
		f.fs.mu.Unlock()
	})
	return err
}

func (fs *trackingFS) track(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	t := &trackedFile{File: f, fs: fs}
	fs.mu.Lock()
	fs.open[t] = struct{}{}
	fs.mu.Unlock()
	return t, nil
}

func (fs *trackingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.track(fs.FS.Create(name, c))
}

func (fs *trackingFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.track(fs.FS.Open(name, opts...))
}

func (fs *trackingFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.track(fs.FS.OpenReadWrite(name, c, opts...))
}

func (fs *trackingFS) OpenDir(name string) (vfs.File, error) {
	return fs.track(fs.FS.OpenDir(name))
}

func (fs *trackingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.track(fs.FS.ReuseForWrite(oldname, newname, c))
}

func (fs *trackingFS) Lock(name string) (io.Closer, error) {
	// A lock holds a file open too.
	c, err := fs.FS.Lock(name)
	if err != nil {
		return nil, err
	}
	l := &trackedLock{Closer: c, fs: fs}
	fs.mu.Lock()
	fs.locks[l] = struct{}{}
	fs.mu.Unlock()
	return l, nil
}

type trackedLock struct {
	io.Closer
	fs   *trackingFS
	once sync.Once
}

func (l *trackedLock) Close() error {
	var err error
	l.once.Do(func() {
		err = l.Closer.Close()
		l.fs.mu.Lock()
		delete(l.fs.locks, l)
		l.fs.mu.Unlock()
	})
	return err
}

// closeLeft closes every file still open; the database must be closed.
func (fs *trackingFS) closeLeft() {
	fs.mu.Lock()
	left := make([]*trackedFile, 0, len(fs.open))
	for f := range fs.open {
		left = append(left, f)
	}
	locks := make([]*trackedLock, 0, len(fs.locks))
	for l := range fs.locks {
		locks = append(locks, l)
	}
	fs.mu.Unlock()
	for _, f := range left {
		_ = f.Close()
	}
	for _, l := range locks {
		_ = l.Close()
	}
}
