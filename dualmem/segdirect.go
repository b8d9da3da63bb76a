package dualmem

import (
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"syscall"
	"unsafe"
)

// Capture writes every step to the database and again to the segment files. Through the page
// cache, the second copy costs about as much CPU time again as the database's (the kernel's
// copy, page allocation and writeback), taken from training, and doubles the dirty pages
// that throttle the writer. So the whole blocks of a segment write go to disk directly
// (O_DIRECT), where the system allows it; the partial blocks at either end of a step, and all
// small writes, go through the page cache as before. Readers see the same bytes either way.
const (
	directMin   = 64 << 10 // smaller writes are not worth a synchronous disk write
	directStage = 1 << 20  // the staging buffer for data that is not aligned in memory
)

// directAlign is the file offset, length and memory alignment of a direct write: whole pages,
// so that no page holds both directly written bytes and bytes written through the cache.
var directAlign = int64(max(4096, os.Getpagesize()))

// writeAt writes b at offset off of segment file i and folds b into the checksum *crc. A
// staged chunk is checksummed from the staging buffer, while it is still in the cache,
// instead of in a pass of its own over the step's bytes.
func (sg *segments) writeAt(i int, b []byte, off int64, crc *uint32) error {
	var d *os.File
	if i < len(sg.direct) {
		d = sg.direct[i]
	}
	lo, hi := alignUp(off), alignDown(off+int64(len(b)))
	if d == nil || hi-lo < directMin {
		*crc = crc32.Update(*crc, crcTable, b)
		_, err := sg.out[i].WriteAt(b, off)
		return err
	}
	head, mid, tail := b[:lo-off], b[lo-off:hi-off], b[hi-off:]
	*crc = crc32.Update(*crc, crcTable, head)
	if _, err := sg.out[i].WriteAt(head, off); err != nil {
		return err
	}
	if err := sg.writeDirect(i, mid, lo, crc); err != nil {
		return err
	}
	*crc = crc32.Update(*crc, crcTable, tail)
	_, err := sg.out[i].WriteAt(tail, hi)
	return err
}

// writeDirect writes the aligned run b at the aligned offset off with direct I/O, staged
// through an aligned buffer when b itself is not aligned in memory, and folds b into *crc. A
// file system that turns the direct write down gets the rest through the page cache, and no
// more direct writes.
func (sg *segments) writeDirect(i int, b []byte, off int64, crc *uint32) error {
	for len(b) > 0 {
		chunk := b[:min(len(b), directStage)]
		if int64(uintptr(unsafe.Pointer(&b[0])))%directAlign != 0 {
			if sg.stage == nil {
				sg.stage = alignedBuffer(directStage)
			}
			chunk = sg.stage[:copy(sg.stage, b)]
		}
		sum := crc32.Update(*crc, crcTable, chunk)
		n, err := sg.direct[i].WriteAt(chunk, off)
		if errors.Is(err, syscall.EINVAL) {
			slog.Debug("direct write refused; writing the segment file through the page cache", "file", sg.specs[i].name, "err", err)
			sg.direct[i].Close()
			sg.direct[i] = nil
			*crc = crc32.Update(*crc, crcTable, b)
			_, err = sg.out[i].WriteAt(b[n:], off+int64(n))
			return err
		}
		if err != nil {
			return err
		}
		*crc = sum
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// openDirects opens every writer's file a second time for direct writes, leaving nil where
// the system does not offer them.
func (sg *segments) openDirects() {
	sg.direct = make([]*os.File, len(sg.out))
	for i, f := range sg.out {
		sg.direct[i] = openDirect(f.Name())
	}
}

func (sg *segments) closeDirects() error {
	var errs []error
	for _, f := range sg.direct {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	sg.direct = nil
	return errors.Join(errs...)
}

func alignUp(x int64) int64   { return (x + directAlign - 1) / directAlign * directAlign }
func alignDown(x int64) int64 { return x / directAlign * directAlign }

// alignedBuffer returns n bytes starting at a multiple of directAlign.
func alignedBuffer(n int) []byte {
	a := int(directAlign)
	b := make([]byte, n+a)
	skip := (a - int(uintptr(unsafe.Pointer(&b[0])))%a) % a
	return b[skip : skip+n]
}
