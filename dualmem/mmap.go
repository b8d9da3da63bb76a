package dualmem

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mappedFile is one segment file mapped read-only and shared, so readers use the page
// cache's copy of it and the heap does not grow with the memory. The file only grows while
// it is mapped: a view of a longer prefix than the mapping covers gets a new, larger
// mapping. Older mappings stay until the process exits, because views handed out earlier
// (a retired snapshot, a background pass over the memory) may still read them; their pages
// are the same page-cache pages, so this costs address space, not memory.
type mappedFile struct {
	path string
	mu   sync.Mutex
	data []byte // the newest mapping; its length may exceed the file's, never what is viewed
	// random is a second mapping of the same pages for readers that jump around (the
	// search's blocks, single tokens), advised MADV_RANDOM: a fault on it reads its own page
	// instead of the device's read-ahead around it (8 MB on some disks), which for a memory
	// larger than the page cache turns each 256-byte key into megabytes of reads. data keeps
	// the default advice, so sequential scans still read ahead.
	random []byte
}

// minMapping is the smallest mapping made: small memories then need no remapping as they grow.
const minMapping = 1 << 20

// view returns the file's first n bytes, read in place.
func (m *mappedFile) view(n int64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if int64(len(m.data)) >= n {
		return m.data[:n:n], nil
	}
	f, err := os.Open(m.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < n {
		return nil, fmt.Errorf("%s: %d bytes, want at least %d", m.path, fi.Size(), n)
	}
	// Twice what is asked for, so a memory that grows by appends is remapped O(log N) times.
	size := max(2*n, minMapping)
	size = (size + int64(os.Getpagesize()) - 1) &^ (int64(os.Getpagesize()) - 1)
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", m.path, err)
	}
	m.data, m.random = data, nil
	return data[:n:n], nil
}

// randomView is view's first n bytes through the MADV_RANDOM mapping.
func (m *mappedFile) randomView(n int64) ([]byte, error) {
	if _, err := m.view(n); err != nil || n == 0 {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.random == nil {
		f, err := os.Open(m.path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, err := unix.Mmap(int(f.Fd()), 0, len(m.data), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("mapping %s: %w", m.path, err)
		}
		_ = unix.Madvise(r, unix.MADV_RANDOM) // advice only: without it reads are slower, not wrong
		m.random = r
	}
	return m.random[:n:n], nil
}

// willNeed asks the kernel to read v's pages now, in one request, where v lies in a
// MADV_RANDOM mapping whose faults would each read one page. It is advice: it reads nothing
// itself and ignores errors.
func willNeed(v []float32) {
	if len(v) == 0 {
		return
	}
	p := unsafe.Pointer(&v[0])
	off := int(uintptr(p) & uintptr(os.Getpagesize()-1)) // madvise wants a page-aligned start
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, -off)), off+4*len(v)), unix.MADV_WILLNEED)
}

// asF32 and friends reinterpret a view as the little-endian arrays the segment files hold
// (segments are only used on little-endian machines; see nativeLittleEndian).
func asF32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func asI32(b []byte) []int32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}

func asI64(b []byte) []int64 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(&b[0])), len(b)/8)
}

// nativeLittleEndian reports whether the machine's own byte order is the segment files'.
func nativeLittleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}
