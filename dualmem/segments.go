package dualmem

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"unsafe"

	"github.com/spotlight-lm/spotlight/lm"
)

// Segment files hold the memory in the layout queries read, so they can read it in place
// (mapped) instead of loading it onto the heap. The database stays the store of record: the
// segments are derived from it, appended with every written step, synced before each commit
// record, validated against the committed steps on open and rebuilt from the database when
// missing or stale. Every array is raw little-endian, one entry per training token in
// memory order (step, then row-major over [Rows, Ctx]); float16 memories are decoded to
// float32, so the scanner reads one format.
//
//	DIR/segments/index        header, then per step: tokens, CRC of its token arrays, CRC per layer
//	DIR/segments/step.i32     rows.i32 pos.i32 targets.i32 offsets.i64
//	DIR/segments/<layer>.keys float32 [N, DIn];  <layer>.grads float32 [N, DOut]
const (
	SegmentsDir    = "segments"
	segBuildingDir = "segments.building" // a rebuild in progress; removed by the next one
	segIndexName   = "index"
	segHeader      = 16
	nTokenFiles    = 5
)

var (
	segMagic = []byte("SPSEG001")
	crcTable = crc32.MakeTable(crc32.Castagnoli)
)

// segSpec is one segment file: its name, bytes per token and, for keys and grads, its layer.
type segSpec struct {
	name  string
	elem  int
	layer string
}

func segSpecs(meta Meta) []segSpec {
	s := []segSpec{{"step.i32", 4, ""}, {"rows.i32", 4, ""}, {"pos.i32", 4, ""}, {"targets.i32", 4, ""}, {"offsets.i64", 8, ""}}
	for _, l := range meta.Layers {
		s = append(s, segSpec{l.Name + ".keys", 4 * l.DIn, l.Name}, segSpec{l.Name + ".grads", 4 * l.DOut, l.Name})
	}
	return s
}

// what names a file's contents in an error.
func (sp segSpec) what() string {
	if sp.layer == "" {
		return "token arrays (" + sp.name + ")"
	}
	return fmt.Sprintf("layer %q (%s)", sp.layer, sp.name)
}

// segments is an open set of segment files.
type segments struct {
	dir   string
	specs []segSpec
	files []*mappedFile
	nl    int // layers

	mu     sync.Mutex
	recs   []uint32 // per step: tokens, token-array CRC, one CRC per layer
	starts []int64  // first token of each step, then the total
	out    []*os.File
	direct []*os.File // out opened again for direct writes, nil where not offered (segdirect.go)
	stage  []byte
	index  *os.File      // nil when read-only
	aggs   []*aggFile    // per layer (aggregates.go)
	bnd    []*boundsFile // per layer: the block bounds sidecar (bounds_file.go)
}

func (sg *segments) width() int    { return 2 + sg.nl }
func (sg *segments) recBytes() int { return 4 * sg.width() }

// steps is the number of steps the segments hold.
func (sg *segments) steps() int {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	return len(sg.starts) - 1
}

func newSegments(dir string, meta Meta) *segments {
	sg := &segments{dir: dir, specs: segSpecs(meta), nl: len(meta.Layers), starts: []int64{0},
		aggs: newAggFiles(dir, meta), bnd: newBoundsFiles(dir, meta)}
	for _, sp := range sg.specs {
		sg.files = append(sg.files, &mappedFile{path: filepath.Join(dir, sp.name)})
	}
	return sg
}

// stepData is one step's bytes for every segment file, in segSpecs order.
func stepData(meta Meta, st *lm.Step) ([][]byte, error) {
	n := st.Tokens()
	step, rows, pos := make([]int32, n), make([]int32, n), make([]int32, n)
	for i := range n {
		step[i], rows[i], pos[i] = int32(st.Step), int32(i/st.Ctx), int32(i%st.Ctx)
	}
	out := [][]byte{bytesOf(step), bytesOf(rows), bytesOf(pos), bytesOf(st.Targets), bytesOf(st.Offsets)}
	for _, l := range meta.Layers {
		ls := st.Layers[l.Name]
		if meta.Precision == F16 { // what the database holds, so both paths read the same values
			keys, grads := make([]float32, len(ls.Keys)), make([]float32, len(ls.Grads))
			if err := decodeLayer(encodeLayer(F16, ls)[blobHeader:], keys, grads); err != nil {
				return nil, err
			}
			ls = lm.LayerStep{Keys: keys, Grads: grads}
		}
		out = append(out, bytesOf(ls.Keys), bytesOf(ls.Grads))
	}
	return out, nil
}

func bytesOf[T int32 | int64 | float32](xs []T) []byte {
	if len(xs) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&xs[0])), len(xs)*int(unsafe.Sizeof(xs[0])))
}

// record is a step's index record for its data.
func (sg *segments) record(tokens int, data [][]byte) []uint32 {
	rec := make([]uint32, sg.width())
	rec[0] = uint32(tokens)
	for i, b := range data {
		rec[sg.slot(i)] = crc32.Update(rec[sg.slot(i)], crcTable, b)
	}
	return rec
}

// slot is where segment file i's checksum goes in a step's index record: the token arrays
// share one, each layer's keys and grads another.
func (sg *segments) slot(i int) int {
	if i < nTokenFiles {
		return 1
	}
	return 2 + (i-nTokenFiles)/2
}

// append writes one step after the last one held (writable segments only).
func (sg *segments) append(meta Meta, st *lm.Step) error {
	data, err := stepData(meta, st)
	if err != nil {
		return err
	}
	sg.mu.Lock()
	defer sg.mu.Unlock()
	var aggs [][]byte
	if len(sg.aggOut()) > 0 {
		aggs = aggRecords(meta, st.Tokens(), data)
	}
	k, at := len(sg.starts)-1, sg.starts[len(sg.starts)-1]
	if st.Step != k+1 {
		return fmt.Errorf("segments: step %d appended after step %d", st.Step, k)
	}
	rec := make([]uint32, sg.width())
	rec[0] = uint32(st.Tokens())
	for i, b := range data {
		if err := sg.writeAt(i, b, at*int64(sg.specs[i].elem), &rec[sg.slot(i)]); err != nil {
			return fmt.Errorf("segment %s: %w", sg.specs[i].name, err)
		}
	}
	if err := sg.appendAggs(k, aggs); err != nil {
		return err
	}
	if err := sg.appendBounds(data, st.Targets); err != nil {
		return err
	}
	if _, err := sg.index.WriteAt(u32Bytes(rec), int64(segHeader+k*sg.recBytes())); err != nil {
		return fmt.Errorf("segment index: %w", err)
	}
	sg.recs = append(sg.recs, rec...)
	sg.starts = append(sg.starts, at+int64(st.Tokens()))
	return nil
}

func u32Bytes(xs []uint32) []byte {
	b := make([]byte, 4*len(xs))
	for i, x := range xs {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

// sync makes every appended step durable.
func (sg *segments) sync() error {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	var errs []error
	for _, f := range slices.Concat(sg.out, []*os.File{sg.index}, sg.aggOut(), sg.boundsOut()) {
		errs = append(errs, f.Sync())
	}
	return errors.Join(errs...)
}

// truncate drops every step after c (they were never committed).
func (sg *segments) truncate(c int) error {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if c >= len(sg.starts)-1 {
		return nil
	}
	sg.starts, sg.recs = sg.starts[:c+1], sg.recs[:c*sg.width()]
	n := sg.starts[c]
	for i, f := range sg.out {
		if err := f.Truncate(n * int64(sg.specs[i].elem)); err != nil {
			return fmt.Errorf("segment %s: %w", sg.specs[i].name, err)
		}
	}
	if err := sg.truncateAggs(c); err != nil {
		return err
	}
	return errors.Join(sg.index.Truncate(int64(segHeader+c*sg.recBytes())), sg.truncateBounds(c))
}

func (sg *segments) close() error {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	errs := []error{sg.closeDirects()}
	for _, f := range sg.out {
		errs = append(errs, f.Close())
	}
	if sg.index != nil {
		errs = append(errs, sg.index.Close())
	}
	errs = append(errs, sg.closeAggs(), sg.closeBounds())
	sg.out, sg.index = nil, nil
	return errors.Join(errs...)
}

// openWriters opens every file for appending (creating them if create) and truncates them
// to the steps held.
func (sg *segments) openWriters(create bool) error {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_TRUNC
	}
	n := sg.starts[len(sg.starts)-1]
	for _, sp := range sg.specs {
		f, err := os.OpenFile(filepath.Join(sg.dir, sp.name), flag, 0o644)
		if err == nil {
			err = f.Truncate(n * int64(sp.elem))
		}
		if err != nil {
			sg.close()
			return fmt.Errorf("segment %s: %w", sp.name, err)
		}
		sg.out = append(sg.out, f)
	}
	f, err := os.OpenFile(filepath.Join(sg.dir, segIndexName), flag, 0o644)
	if err == nil && create {
		_, err = f.Write(append(append([]byte{}, segMagic...), u32Bytes([]uint32{uint32(sg.nl), 0})...))
	}
	if err == nil {
		err = f.Truncate(int64(segHeader + (len(sg.starts)-1)*sg.recBytes()))
	}
	if err != nil {
		sg.close()
		return fmt.Errorf("segment index: %w", err)
	}
	sg.index = f
	sg.openDirects()
	err = sg.openAggWriters(create)
	if err == nil {
		err = sg.openBoundsWriters(create)
	}
	if err != nil {
		sg.close()
		return err
	}
	return nil
}

// createSegments starts an empty set of segment files in dir.
func createSegments(dir string, meta Meta) (*segments, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sg := newSegments(dir, meta)
	if err := sg.openWriters(true); err != nil {
		return nil, err
	}
	return sg, sg.sync()
}

// errNoSegments: the directory has no segment files (yet).
var errNoSegments = errors.New("no segment files")

// openSegments opens the segment files in dir and checks them against the committed steps
// infos: every step's token count, every file's length, and the checksums of the last
// step. Steps beyond the committed ones are dropped (from the files too when writable).
// A mismatch is an error naming the layer and the step.
func openSegments(dir string, meta Meta, infos []lm.StepInfo, writable bool) (*segments, error) {
	sg := newSegments(dir, meta)
	raw, err := os.ReadFile(filepath.Join(dir, segIndexName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoSegments
	}
	if err != nil {
		return nil, err
	}
	if len(raw) < segHeader || string(raw[:8]) != string(segMagic) || int(binary.LittleEndian.Uint32(raw[8:])) != sg.nl {
		return nil, errors.New("segment index: bad header")
	}
	c := len(infos)
	if have := (len(raw) - segHeader) / sg.recBytes(); have < c {
		return nil, fmt.Errorf("segment index: holds %d of %d committed steps (torn at step %d)", have, c, have+1)
	}
	sg.recs = make([]uint32, c*sg.width())
	for i := range sg.recs {
		sg.recs[i] = binary.LittleEndian.Uint32(raw[segHeader+4*i:])
	}
	for k, si := range infos {
		if got := int(sg.recs[k*sg.width()]); got != si.Tokens() {
			return nil, fmt.Errorf("segment index: step %d has %d tokens, the database %d", k+1, got, si.Tokens())
		}
		sg.starts = append(sg.starts, sg.starts[k]+int64(si.Tokens()))
	}
	for _, sp := range sg.specs {
		if err := sg.checkLength(sp); err != nil {
			return nil, err
		}
	}
	if c > 0 {
		if err := sg.checkSteps(c, c); err != nil {
			return nil, err
		}
	}
	sg.checkAggs(writable)
	sg.checkBounds(writable)
	if writable {
		if err := sg.openWriters(false); err != nil {
			return nil, err
		}
	}
	return sg, nil
}

// checkLength checks that a file holds every step the index lists.
func (sg *segments) checkLength(sp segSpec) error {
	fi, err := os.Stat(filepath.Join(sg.dir, sp.name))
	if err != nil {
		return fmt.Errorf("segment of %s: %w", sp.what(), err)
	}
	c := len(sg.starts) - 1
	if want := sg.starts[c] * int64(sp.elem); fi.Size() < want {
		k := 0
		for sg.starts[k+1]*int64(sp.elem) <= fi.Size() {
			k++
		}
		return fmt.Errorf("segment of %s: truncated at step %d (%d of %d bytes)", sp.what(), k+1, fi.Size(), want)
	}
	return nil
}

// checkSteps compares steps from..to (1-based) of every file with their index checksums.
func (sg *segments) checkSteps(from, to int) error {
	return sg.checkStepsCtx(context.Background(), from, to, nil)
}
