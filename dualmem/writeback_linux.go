package dualmem

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing f's dirty pages back, without waiting.
func startWriteback(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}

// allocate gives f's bytes [off, off+n) disk blocks without changing its size or contents.
func allocate(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// release writes f's bytes [from, to) back and hands their pages back to the kernel, so
// that the next writes reuse them (see logSync). It first unmaps them from every mapping of
// f in this process (Badger's): writing back a mapped page write-protects it, one
// cross-CPU TLB flush a page, which interrupts training on the other cores; unmapping a
// range flushes once. MADV_PAGEOUT never discards data (a page still dirty is kept, just
// unmapped), and an address range that no longer maps f (Badger remaps a value-log file
// when it truncates it, on the writer's goroutine, never during a release) would at worst
// be anonymous memory pushed to swap. Then it writes the range back, waits, and drops the
// now clean pages. It is a hint: errors.ErrUnsupported means the kernel lacks the call,
// anything else is left to the next try.
func release(f *os.File, from, to int64) error {
	from, to = alignDown(from), alignDown(to)
	if to <= from {
		return nil
	}
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	maps, err := mappingsOf(st.Dev, st.Ino)
	if err != nil {
		return err
	}
	for _, m := range maps {
		lo, hi := max(from, m.off), min(to, m.off+int64(m.end-m.start))
		if lo >= hi {
			continue
		}
		addr := m.start + uintptr(lo-m.off)
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, addr, uintptr(hi-lo), unix.MADV_PAGEOUT); e == unix.EINVAL {
			return errors.ErrUnsupported
		}
	}
	err = unix.SyncFileRange(fd, from, to-from,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	if err != nil {
		return err
	}
	return unix.Fadvise(fd, from, to-from, unix.FADV_DONTNEED)
}

// mapping is one line of /proc/self/maps: addresses [start, end) map the file from off.
type mapping struct {
	start, end uintptr
	off        int64
}

// mappingsOf lists this process's mappings of the file with device dev and inode ino.
func mappingsOf(dev, ino uint64) ([]mapping, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x %d", unix.Major(dev), unix.Minor(dev), ino)
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[3]+" "+fs[4] != want {
			continue
		}
		var m mapping
		if _, err := fmt.Sscanf(fs[0]+" "+fs[2], "%x-%x %x", &m.start, &m.end, &m.off); err == nil {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}
