package dualmem

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// The block bounds of each layer live beside its segment files in DIR/segments/<layer>.bounds:
// a header (magic, DIn, DOut, block size), then per step its number of blocks, the CRC of
// its boxes and the boxes (a stepRecord, float32 little-endian). They are appended with
// every step, synced with the segments before each commit, fully checked when the segments
// are opened, and rebuilt from the segment files when missing or corrupt (in memory instead
// on a read-only open): a bad bounds file costs time, never a wrong answer.
const boundsHeader = 32

var boundsMagic = []byte("SPBND002")

// boundsFile is one layer's bounds sidecar.
type boundsFile struct {
	path      string
	layer     string
	din, dout int
	ok        bool    // holds every step the segments hold
	ends      []int64 // per step: where its record ends; ends[0] is the header
	nblk      []int32
	out       *os.File // nil when read-only
	m         mappedFile
}

func newBoundsFiles(dir string, meta Meta) []*boundsFile {
	var bs []*boundsFile
	for _, l := range meta.Layers {
		p := filepath.Join(dir, l.Name+".bounds")
		bs = append(bs, &boundsFile{path: p, layer: l.Name, din: l.DIn, dout: l.DOut, m: mappedFile{path: p}, ends: []int64{boundsHeader}})
	}
	return bs
}

func (b *boundsFile) header() []byte {
	h := make([]byte, boundsHeader)
	copy(h, boundsMagic)
	binary.LittleEndian.PutUint32(h[8:], uint32(b.din))
	binary.LittleEndian.PutUint32(h[12:], uint32(b.dout))
	binary.LittleEndian.PutUint32(h[16:], boundsBlock)
	return h
}

// recordBytes is a step's record: nblk, CRC, boxes.
func recordBytes(rec []float32, nblk int) []byte {
	data := bytesOf(rec)
	out := make([]byte, 8, 8+len(data))
	binary.LittleEndian.PutUint32(out, uint32(nblk))
	binary.LittleEndian.PutUint32(out[4:], crc32.Checksum(data, crcTable))
	return append(out, data...)
}

// appendStep writes the record of the next step (writable, valid files only).
func (b *boundsFile) appendStep(keys, grads []float32, targets []int32) error {
	if !b.ok || b.out == nil {
		return nil
	}
	rec, nblk := stepRecord(keys, grads, targets, b.din, b.dout)
	buf := recordBytes(rec, nblk)
	at := b.ends[len(b.ends)-1]
	if _, err := b.out.WriteAt(buf, at); err != nil {
		return fmt.Errorf("bounds of layer %q: %w", b.layer, err)
	}
	b.ends, b.nblk = append(b.ends, at+int64(len(buf))), append(b.nblk, int32(nblk))
	return nil
}

// check reads the file and checks its header and the records of the c steps, checksums
// included; an error names the layer and the step.
func (b *boundsFile) check(starts []int64) error {
	c := len(starts) - 1
	b.ok, b.ends, b.nblk = false, []int64{boundsHeader}, nil
	f, err := os.Open(b.path)
	if err != nil {
		return fmt.Errorf("bounds of layer %q: %w", b.layer, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	h := make([]byte, boundsHeader)
	if _, err := io.ReadFull(r, h); err != nil || string(h) != string(b.header()) {
		return fmt.Errorf("bounds of layer %q: bad header", b.layer)
	}
	var hdr [8]byte
	var data []byte
	for t := 1; t <= c; t++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("bounds of layer %q: step %d: %w", b.layer, t, err)
		}
		nblk := int(binary.LittleEndian.Uint32(hdr[:]))
		n := 4 * recordWords(nblk, int(starts[t]-starts[t-1]), b.din, b.dout)
		if nblk > 1<<24 || n > 1<<30 {
			return fmt.Errorf("bounds of layer %q: step %d: %d blocks", b.layer, t, nblk)
		}
		if cap(data) < n {
			data = make([]byte, n)
		}
		data = data[:n]
		if _, err := io.ReadFull(r, data); err != nil {
			return fmt.Errorf("bounds of layer %q: step %d: %w", b.layer, t, err)
		}
		if crc32.Checksum(data, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
			return fmt.Errorf("bounds of layer %q: step %d: checksum mismatch", b.layer, t)
		}
		b.ends, b.nblk = append(b.ends, b.ends[t-1]+int64(8+n)), append(b.nblk, int32(nblk))
	}
	b.ok = true
	return nil
}

// rebuild writes the file anew from the segment files of sg's c steps.
func (b *boundsFile) rebuild(sg *segments) error {
	c := len(sg.starts) - 1
	open := func(name string) (*os.File, error) { return os.Open(filepath.Join(sg.dir, name)) }
	kf, err := open(b.layer + ".keys")
	if err != nil {
		return err
	}
	defer kf.Close()
	gf, err := open(b.layer + ".grads")
	if err != nil {
		return err
	}
	defer gf.Close()
	tf, err := open(sg.specs[3].name)
	if err != nil {
		return err
	}
	defer tf.Close()
	tmp := b.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := w.Write(b.header()); err != nil {
		return err
	}
	var keys, grads []float32
	var targets []int32
	for t := range c {
		a, n := sg.starts[t], int(sg.starts[t+1]-sg.starts[t])
		keys, grads = grow(keys, n*b.din), grow(grads, n*b.dout)
		if cap(targets) < n {
			targets = make([]int32, n)
		}
		targets = targets[:n]
		if err := errors.Join(readAt(kf, bytesOf(keys), a*int64(4*b.din)), readAt(gf, bytesOf(grads), a*int64(4*b.dout)),
			readAt(tf, bytesOf(targets), a*4)); err != nil {
			return fmt.Errorf("step %d: %w", t+1, err)
		}
		if _, err := w.Write(recordBytes(stepRecord(keys, grads, targets, b.din, b.dout))); err != nil {
			return err
		}
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, b.path); err != nil {
		return err
	}
	if err := syncDir(sg.dir); err != nil {
		return err
	}
	return b.check(sg.starts)
}

func readAt(f *os.File, b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	_, err := f.ReadAt(b, off)
	return err
}

// checkBounds checks every layer's bounds file against the c steps the segments hold,
// rebuilding a bad one when writable; one still bad is left out (Search then computes the
// layer's bounds in memory).
func (sg *segments) checkBounds(writable bool) {
	for _, b := range sg.bnd {
		err := b.check(sg.starts)
		if err != nil && writable {
			if errors.Is(err, os.ErrNotExist) { // what a training run leaves
				slog.Info("building block bounds from the segment files", "layer", b.layer)
			} else {
				slog.Warn("rebuilding block bounds from the segment files", "layer", b.layer, "reason", err)
			}
			err = b.rebuild(sg)
		}
		if err != nil {
			logDerived(err, "block bounds not used; Search computes them in memory", "layer", b.layer, "reason", err)
		}
	}
}

// openBoundsWriters opens the bounds files for appending: created empty when create, else
// truncated to the steps held.
func (sg *segments) openBoundsWriters(create bool) error {
	for _, b := range sg.bnd {
		if !create && !b.ok {
			continue
		}
		flag := os.O_RDWR
		if create {
			flag |= os.O_CREATE | os.O_TRUNC
		}
		f, err := os.OpenFile(b.path, flag, 0o644)
		if err == nil && create {
			_, err = f.Write(b.header())
			b.ok, b.ends, b.nblk = true, []int64{boundsHeader}, nil
		}
		if err == nil {
			err = f.Truncate(b.ends[len(b.ends)-1])
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			return fmt.Errorf("bounds of layer %q: %w", b.layer, err)
		}
		b.out = f
	}
	return nil
}

// appendBounds writes one step's bounds for every layer; data is stepData's.
func (sg *segments) appendBounds(data [][]byte, targets []int32) error {
	for li, b := range sg.bnd {
		if err := b.appendStep(asF32(data[nTokenFiles+2*li]), asF32(data[nTokenFiles+2*li+1]), targets); err != nil {
			return err
		}
	}
	return nil
}

// boundsOut lists the open bounds writers (for sync and close).
func (sg *segments) boundsOut() []*os.File {
	var fs []*os.File
	for _, b := range sg.bnd {
		if b.out != nil {
			fs = append(fs, b.out)
		}
	}
	return fs
}

// truncateBounds drops the bounds of every step after c.
func (sg *segments) truncateBounds(c int) error {
	for _, b := range sg.bnd {
		if b.out == nil || c >= len(b.ends)-1 {
			continue
		}
		b.ends, b.nblk = b.ends[:c+1], b.nblk[:c]
		if err := b.out.Truncate(b.ends[c]); err != nil {
			return fmt.Errorf("bounds of layer %q: %w", b.layer, err)
		}
	}
	return nil
}

// closeBounds closes the bounds writers.
func (sg *segments) closeBounds() error {
	var errs []error
	for _, b := range sg.bnd {
		if b.out != nil {
			errs = append(errs, b.out.Close())
			b.out = nil
		}
	}
	return errors.Join(errs...)
}

// boundsView is layer li's bounds of the first steps steps, mapped, or nil when the file
// is not valid (sg.mu held).
func (sg *segments) boundsView(li, steps int) (*blockBounds, error) {
	b := sg.bnd[li]
	if !b.ok || len(b.ends)-1 < steps {
		return nil, nil
	}
	view, err := b.m.view(b.ends[steps])
	if err != nil {
		return nil, fmt.Errorf("bounds of layer %q: %w", b.layer, err)
	}
	bb := &blockBounds{din: b.din, dout: b.dout, off: make([]int64, steps), nblk: b.nblk[:steps:steps]}
	if steps > 0 {
		bb.words = asF32(view[boundsHeader:])
	}
	for t := range steps {
		bb.off[t] = (b.ends[t]-boundsHeader)/4 + 2
	}
	return bb, nil
}

// boundsStepBytes is about what one step of n tokens adds to the bounds files, for the
// disk-space checks: a step has at most 2n/boundsBlock + 1 blocks plus one per target
// (the targets taken to be fewer than the widest layer output, the vocabulary for `out`).
func boundsStepBytes(meta Meta, n int) int64 {
	groups := 0
	for _, l := range meta.Layers {
		groups = max(groups, l.DOut)
	}
	nblk := min(n, 2*n/boundsBlock+1+groups)
	var b int64
	for _, l := range meta.Layers {
		b += int64(8 + 4*recordWords(nblk, n, l.DIn, l.DOut))
	}
	return b
}
