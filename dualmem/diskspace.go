package dualmem

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// ErrDiskFull means the filesystem holding the data directory lacks the room that the next
// write, and the commit and clean close after it, need. Nothing was written.
var ErrDiskFull = errors.New("disk full")

// Badger writes its value log, memtables and tables through memory maps of sparse files:
// a write to a page the filesystem cannot back kills the process with SIGBUS instead of
// returning an error. So every write first checks the free space against what it and
// everything after it up to a clean close can need.
const (
	memTableSize = 16 << 20  // one memtable: what its flush to a table writes
	vlogFileSize = 256 << 20 // one value-log file: what a value-log GC may rewrite
	// diskSlack covers Badger's own small writes (file headers, manifest, discard stats)
	// and the rounding of every file to filesystem blocks.
	diskSlack = 4 << 20
	// entryOverhead is what Badger adds to each entry: key, header, pointer, checksum.
	entryOverhead = 64
)

// freeSpace is the space the filesystem holding path has for this process; a variable so
// tests can put the data directory on a nearly full disk without filling one.
var freeSpace = FreeBytes

type diskFullError struct{ need, free int64 }

func (e *diskFullError) Error() string {
	const mb = 1 << 20
	return fmt.Sprintf("disk full: need %d MB, %d MB free", (e.need+mb-1)/mb, e.free/mb)
}

func (e *diskFullError) Unwrap() error { return ErrDiskFull }

// room fails with ErrDiskFull unless the filesystem holding path has need bytes free.
// path's nearest existing ancestor stands in for a path not created yet.
func room(path string, need int64) error {
	for {
		if _, err := os.Stat(path); err == nil || filepath.Dir(path) == path {
			break
		}
		path = filepath.Dir(path)
	}
	free, err := freeSpace(path)
	if err != nil {
		return fmt.Errorf("%s: free space: %w", path, err)
	}
	if free < need {
		return &diskFullError{need: need, free: free}
	}
	return nil
}

// stepBytes is what one step of n tokens adds to the store: database and segment files.
func stepBytes(meta Meta, n int) int64 {
	b := int64(infoSize + blobHeader + 12*n + 2*entryOverhead)
	for _, l := range meta.Layers {
		if !meta.SegmentsOnly {
			b += int64(blobHeader+layerHeader+precisionBytes(meta.Precision)*n*(l.DIn+l.DOut)) + entryOverhead
		}
	}
	return b + segStepBytes(meta, n)
}

// openNeed is the room a read-write open needs: the memtables a killed writer left are
// replayed into tables, a new memtable and value-log file are started, and the last
// memtable is flushed at close.
func openNeed(dbPath string) int64 {
	return memTableSize + diskSlack + filesBytes(dbPath, ".mem")
}

// hasMemtables reports whether the database at path holds memtable files.
func hasMemtables(path string) bool {
	ents, _ := os.ReadDir(path)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".mem") {
			return true
		}
	}
	return false
}

// filesBytes is the space the files in dir whose names end in ext take on disk.
func filesBytes(dir, ext string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ext) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			n += allocated(fi)
		}
	}
	return n
}

// reserve is the room the writer keeps for what follows the next write: a commit of a
// checkpoint as large as the last one, a memtable flush, and a compaction rewriting the
// tables (keys and small values; the large ones stay in the value log).
func (s *Store) reserve() int64 {
	return memTableSize + diskSlack + s.ckptBytes.Load() + filesBytes(filepath.Join(s.dir, "db"), ".sst")
}

// pendingBytes is what the background writer has yet to store.
func (s *Store) pendingBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// Room fails with ErrDiskFull ("disk full: need N MB, M MB free") when one more step of
// the given number of tokens, and the commit and close after it, would not fit on the
// disk. A trainer asks before each step, so it can stop with a checkpoint while there is
// still room to write one.
func (s *Store) Room(tokens int) error {
	if err := s.writable(); err != nil {
		return err
	}
	return room(s.dir, s.pendingBytes()+stepBytes(s.meta, tokens)+s.reserve())
}

// checkpointBytes is the size of the stored checkpoint (0 if none).
func checkpointBytes(txn *badger.Txn) int64 {
	opt := badger.IteratorOptions{Prefix: []byte{pCheckpoint}}
	it := txn.NewIterator(opt)
	defer it.Close()
	var n int64
	for it.Rewind(); it.Valid(); it.Next() {
		n += it.Item().ValueSize()
	}
	return n
}
