package dualmem

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Badger writes values into its value-log files through a shared mapping and, without
// SyncWrites, DB.Sync syncs only the newest value-log file and the newest memtable's log: a
// file it has rotated away from is left to the kernel's writeback (a value-log file for
// good, a memtable's log until its table is written). logSync closes that gap from the
// outside, by the files' names (NNNNNN.vlog and NNNNN.mem in the database directory), and
// a second one:
//   - Commit syncs every value-log file written since the last commit and every memtable
//     log, so that a power failure after a commit record cannot lose a step it names;
//   - after every step the writer asks the kernel to start writing the new pages back (where
//     the system has a call for it), so they do not pile up until the kernel throttles the
//     writer or the next commit has gigabytes to sync while training waits;
//   - it allocates the newest value-log file's blocks a little ahead of where Badger writes.
//     Badger's first write to each page of the file faults, and the fault, not the copy, is
//     most of the database's capture CPU (18 of a `small` step's 20 ms): the kernel
//     allocates a block on a sparse file and zeroes the page. Allocating ahead takes the
//     block allocation out of the fault (the write benchmark's CPU a step fell by ~7%); the
//     zeroing stays. The blocks are allocated unwritten, so they read as zeros, as the
//     holes did: a crash or Badger's truncation at rotation sees the same file;
//   - a step after Badger wrote them, it writes the step's pages back and hands them back
//     to the kernel (release), where the system has the calls for it; then the writeback
//     hint above is not needed. Two costs of leaving them cached and mapped, both measured
//     on these 2-core virtual machines: the page cache grows into memory the machine has not
//     touched for a while, and on a virtual machine that hands idle memory back to its host
//     such a page costs ~10 µs at its first fault (a 16 MB copy into a fresh mapping: 43 ms
//     of CPU; 7 ms when the pages written two copies earlier are handed back); and writing
//     back a page still mapped write-protects it with one cross-CPU TLB flush a page, an
//     interrupt to the training threads on the other core each time. Nothing reads the value
//     log while training: queries read the segment files.
type logSync struct {
	dir     string
	from    int      // the first value-log file that a commit has not synced since finishing it
	cur     int      // curFile's number, -1 if none
	curFile *os.File // the newest value-log file, kept open for the writeback hints
	wrote   int64    // bytes handed to Badger since curFile became the newest (an estimate of its end)
	alloc   int64    // curFile's bytes allocated ahead, from its start
	noAlloc bool     // the file system refused an allocation: no more tries

	prev      int64 // wrote before the latest step: what Badger has finished writing
	released  int64 // curFile's bytes from its start written back and handed to the kernel
	noRelease bool  // the system lacks the calls: start the writeback instead
}

// allocAhead is how far past its estimated end the newest value-log file is kept allocated:
// a few steps of the larger presets, so that a step never writes into holes.
const allocAhead = 64 << 20

func newLogSync(dbDir string) *logSync {
	v := &logSync{dir: dbDir, cur: -1}
	if ids, err := v.files(); err == nil && len(ids) > 0 {
		v.from = ids[len(ids)-1]
	}
	return v
}

// files lists the value-log file numbers, in order.
func (v *logSync) files() ([]int, error) {
	ids, _, err := v.list()
	return ids, err
}

// list returns the value-log file numbers, in order, and the memtable logs' paths.
func (v *logSync) list() (vlogs []int, mems []string, err error) {
	ents, err := os.ReadDir(v.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if id, err := strconv.Atoi(strings.TrimSuffix(name, ".vlog")); err == nil && strings.HasSuffix(name, ".vlog") {
			vlogs = append(vlogs, id)
		} else if strings.HasSuffix(name, ".mem") {
			mems = append(mems, filepath.Join(v.dir, name))
		}
	}
	return vlogs, mems, nil // ReadDir sorts by name, and the numbers are zero-padded
}

func (v *logSync) path(id int) string { return filepath.Join(v.dir, fmt.Sprintf("%06d.vlog", id)) }

// written starts the writeback of the n bytes the writer has just stored and allocates the
// file ahead of them. Both are hints: errors are left to the commit's sync.
func (v *logSync) written(n int64) {
	v.wrote += n
	if v.curFile != nil {
		if _, err := os.Stat(v.path(v.cur + 1)); err != nil { // not rotated: no need to list
			v.hint()
			return
		}
	}
	ids, err := v.files()
	if err != nil || len(ids) == 0 {
		return
	}
	if newest := ids[len(ids)-1]; newest != v.cur {
		if v.curFile != nil {
			// The rest of the file finished since the last hint.
			if fi, err := v.curFile.Stat(); err == nil {
				v.release(fi.Size())
			}
			v.curFile.Close()
		}
		v.curFile, v.cur, v.wrote, v.alloc, v.prev, v.released = nil, newest, n, 0, 0, 0
		if f, err := os.OpenFile(v.path(newest), os.O_RDWR, 0); err == nil {
			v.curFile = f
			// What the file holds already: all of it when it was the newest at Open, and
			// this step's share after a rotation.
			if fi, err := f.Stat(); err == nil {
				v.wrote = min(allocated(fi), fi.Size())
				v.alloc, v.prev = v.wrote, v.wrote
			}
		}
	}
	if v.curFile != nil {
		v.hint()
	}
}

func (v *logSync) hint() {
	v.release(v.prev)
	v.prev = v.wrote
	if v.noAlloc || v.wrote+allocAhead/2 < v.alloc {
		return
	}
	// Never past the file's size: Badger has sized it, and allocation must not change it.
	fi, err := v.curFile.Stat()
	if err != nil {
		return
	}
	to := min(v.wrote+allocAhead, fi.Size())
	if to <= v.alloc {
		return
	}
	if err := allocate(v.curFile, v.alloc, to-v.alloc); err != nil {
		v.noAlloc = true
		return
	}
	v.alloc = to
}

// release writes curFile's bytes from the last release up to to back and hands their pages
// to the kernel, or where the system lacks the calls starts the writeback of the file;
// errors are left to the next try and the commit's sync.
func (v *logSync) release(to int64) {
	if v.noRelease {
		startWriteback(v.curFile)
		return
	}
	if to <= v.released {
		return
	}
	if err := release(v.curFile, v.released, to); errors.Is(err, errors.ErrUnsupported) {
		v.noRelease = true
		startWriteback(v.curFile)
	} else if err == nil {
		v.released = alignDown(to)
	}
}

// sync makes every value-log file written since the last sync, and every memtable log,
// durable.
func (v *logSync) sync() error {
	ids, mems, err := v.list()
	if err != nil {
		return err
	}
	var paths []string
	for _, id := range ids {
		if id >= v.from {
			paths = append(paths, v.path(id))
		}
	}
	var errs []error
	for _, p := range append(paths, mems...) {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) { // removed since: by a value-log GC, or its table is written
			continue
		}
		if err == nil {
			err = errors.Join(f.Sync(), f.Close())
		}
		errs = append(errs, err)
	}
	if len(ids) > 0 {
		v.from = ids[len(ids)-1] // the newest may still grow; the older ones are finished
	}
	return errors.Join(errs...)
}

func (v *logSync) close() {
	if v.curFile != nil {
		v.curFile.Close()
		v.curFile = nil
	}
}
