// Package filemem holds large derived arrays, such as a memory's per-token indexes, in
// shared mappings of unlinked files rather than on the heap. Their pages are then
// file-backed: the page cache keeps them while memory is free, and under pressure the
// kernel writes them out and drops them, where anonymous memory (with no swap) stays
// resident. The arrays a memory needs then grow the disk it uses, not its heap.
package filemem

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"unsafe"
)

// MinMapped is the smallest array, in bytes, that New's arenas give their own mapping;
// smaller ones stay on the heap, where they cost less than a file and a mapping each.
// Tests lower it to map everything.
var MinMapped = 1 << 20

// Arena allocates arrays that stay valid until Close. A nil *Arena allocates on the heap.
type Arena struct {
	dirs []string

	mu     sync.Mutex
	maps   [][]byte
	mapped int64
	closed bool
	failed bool // a mapping could not be made: later arrays go to the heap without trying
}

// New is an arena whose files are made in the first of dirs where that works (a read-only
// store's directory fails, and the next is tried); where none does, arrays go on the heap.
func New(dirs ...string) *Arena { return &Arena{dirs: dirs} }

// Int32s is a zeroed []int32 of length n.
func (a *Arena) Int32s(n int) []int32 {
	b := a.bytes(n * 4)
	if b == nil {
		return make([]int32, n)
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), n)
}

// Float64s is a zeroed []float64 of length n.
func (a *Arena) Float64s(n int) []float64 {
	b := a.bytes(n * 8)
	if b == nil {
		return make([]float64, n)
	}
	return unsafe.Slice((*float64)(unsafe.Pointer(&b[0])), n)
}

// Mapped is the bytes the arena holds in mappings.
func (a *Arena) Mapped() int64 {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mapped
}

// Close unmaps every array the arena gave out; none may be used after it. It is safe to
// call more than once.
func (a *Arena) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, m := range a.maps {
		errs = append(errs, unmap(m))
	}
	a.maps, a.mapped, a.closed = nil, 0, true
	return errors.Join(errs...)
}

// bytes is n zeroed bytes in a mapping, or nil where the heap should serve: a small
// request, a closed or nil arena, or no directory that takes a file.
func (a *Arena) bytes(n int) []byte {
	if a == nil || n == 0 || n < MinMapped {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.failed {
		return nil
	}
	var errs []error
	for _, dir := range a.dirs {
		b, err := mapFile(dir, n)
		if err == nil {
			a.maps = append(a.maps, b)
			a.mapped += int64(n)
			return b
		}
		errs = append(errs, err)
	}
	a.failed = true
	slog.Warn("holding per-token indexes on the heap", "reason", errors.Join(errs...))
	return nil
}

// mapFile maps a new file of n bytes in dir, unlinked at once so that nothing is left
// behind whatever happens to the process. Its blocks are reserved first: a write through
// the mapping to a block the disk cannot supply would kill the process.
func mapFile(dir string, n int) ([]byte, error) {
	f, err := os.CreateTemp(dir, ".spotlight-index-*")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return nil, err
	}
	if err := reserve(f, int64(n)); err != nil {
		return nil, fmt.Errorf("reserving %d bytes in %s: %w", n, dir, err)
	}
	return mapShared(f, n)
}
