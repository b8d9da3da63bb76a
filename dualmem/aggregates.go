package dualmem

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	badger "github.com/dgraph-io/badger/v4"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/spotlight-lm/spotlight/lm"
)

// Aggregate files hold, per layer and training step t, the step's update matrix and key sum
//
//	G_t = Σ_i g_{t,i} k_{t,i}ᵀ   float64 [DOut, DIn]
//	K_t = Σ_i k_{t,i}            float64 [DIn]
//	S_t = Σ_i g_{t,i}            float64 [DOut] (the bias's update)
//
// so totals, the W_0 and bias terms and the per-step timeline of a query follow without
// reading a key: Σ_i α_i = K_t·x and Σ_i contribution_i = s_t·uᵀG_t x. They sit next to the
// segment files, are written with every appended step, and are rebuilt from the database
// when missing or stale. Products of two float32 are exact in float64, so G_t and K_t are
// the float64 sums of the very values a scan reads.
//
//	DIR/segments/<layer>.agg  header (magic, DIn, DOut), then one record per step:
//	                          CRC of the payload, tokens, G_t, K_t, S_t
const (
	aggHeader = 16
	aggPrefix = 8 // CRC and token count before each record's payload
)

var aggMagic = []byte("SPAGG002")

// aggFile is one layer's aggregate file within a set of segments.
type aggFile struct {
	layer     string
	din, dout int
	path      string

	// Guarded by the segments' mu.
	m     *mappedFile
	out   *os.File // open for appending (writable and valid only)
	stale error    // why the file cannot be used; nil when valid

	mu      sync.Mutex
	checked []bool // per step: payload checksum verified
}

func newAggFiles(dir string, meta Meta) []*aggFile {
	out := make([]*aggFile, len(meta.Layers))
	for i, l := range meta.Layers {
		p := filepath.Join(dir, l.Name+".agg")
		out[i] = &aggFile{layer: l.Name, din: l.DIn, dout: l.DOut, path: p, m: &mappedFile{path: p}}
	}
	return out
}

// floats is the payload length of one record in float64s; recBytes its size with prefix.
func (a *aggFile) floats() int     { return a.dout*a.din + a.din + a.dout }
func (a *aggFile) recBytes() int64 { return int64(aggPrefix + 8*a.floats()) }
func (a *aggFile) size(steps int) int64 {
	return aggHeader + int64(steps)*a.recBytes()
}

func (a *aggFile) header() []byte {
	return append(append([]byte{}, aggMagic...), u32Bytes([]uint32{uint32(a.din), uint32(a.dout)})...)
}

// aggStepBytes is what one step adds to the aggregate files.
func aggStepBytes(meta Meta) int64 {
	var b int64
	for _, l := range meta.Layers {
		b += int64(aggPrefix + 8*(l.DOut*l.DIn+l.DIn+l.DOut))
	}
	return b
}

// aggRecord computes one step's record from its n tokens' keys [n, din] and grads [n, dout].
func aggRecord(din, dout, n int, keys, grads []float32) []byte {
	rec := make([]byte, aggPrefix+8*(dout*din+din+dout))
	pay := asF64(rec[aggPrefix:])
	g, kk, gs := pay[:dout*din], pay[dout*din:dout*din+din], pay[dout*din+din:]
	if n > 0 {
		k64 := make([]float64, n*din)
		for i, v := range keys[:n*din] {
			k64[i] = float64(v)
			kk[i%din] += float64(v)
		}
		addOuter(g, din, dout, n, k64, grads[:n*dout])
		// Token by token, as the scanner sums them without aggregates: the same bits.
		for j := range n {
			for o, v := range grads[j*dout : (j+1)*dout] {
				gs[o] += float64(v)
			}
		}
	}
	binary.LittleEndian.PutUint32(rec, crc32.Checksum(rec[aggPrefix:], crcTable))
	binary.LittleEndian.PutUint32(rec[4:], uint32(n))
	return rec
}

// addOuterGemm adds Σ_j g_j k_jᵀ over n tokens to G [dout, din] with gonum's Gemm.
func addOuterGemm(g []float64, din, dout, n int, k64 []float64, grads []float32) {
	g64 := make([]float64, n*dout)
	for i, v := range grads[:n*dout] {
		g64[i] = float64(v)
	}
	blas64.Gemm(blas.Trans, blas.NoTrans, 1,
		blas64.General{Rows: n, Cols: dout, Stride: dout, Data: g64},
		blas64.General{Rows: n, Cols: din, Stride: din, Data: k64[:n*din]},
		1, blas64.General{Rows: dout, Cols: din, Stride: din, Data: g})
}

// aggRecords is aggRecord for every layer of one step's segment data (stepData's order).
func aggRecords(meta Meta, n int, data [][]byte) [][]byte {
	out := make([][]byte, len(meta.Layers))
	for li, l := range meta.Layers {
		out[li] = aggRecord(l.DIn, l.DOut, n, asF32(data[nTokenFiles+2*li]), asF32(data[nTokenFiles+2*li+1]))
	}
	return out
}

// appendAggs writes step k's (0-based) records to the valid aggregate files; sg.mu is held.
func (sg *segments) appendAggs(k int, recs [][]byte) error {
	for li, a := range sg.aggs {
		if a.out == nil {
			continue // stale: the rebuild writes this step too
		}
		if _, err := a.out.WriteAt(recs[li], a.size(k)); err != nil {
			return fmt.Errorf("aggregates of layer %q: %w", a.layer, err)
		}
	}
	return nil
}

// aggOut lists the open aggregate files, for sync and close; sg.mu is held.
func (sg *segments) aggOut() []*os.File {
	var fs []*os.File
	for _, a := range sg.aggs {
		if a.out != nil {
			fs = append(fs, a.out)
		}
	}
	return fs
}

// truncateAggs drops every step after c; sg.mu is held.
func (sg *segments) truncateAggs(c int) error {
	for _, a := range sg.aggs {
		if a.out == nil {
			continue
		}
		if err := a.out.Truncate(a.size(c)); err != nil {
			return fmt.Errorf("aggregates of layer %q: %w", a.layer, err)
		}
	}
	return nil
}

func (sg *segments) closeAggs() error {
	var errs []error
	for _, a := range sg.aggs {
		if a.out != nil {
			errs = append(errs, a.out.Close())
			a.out = nil
		}
	}
	return errors.Join(errs...)
}

// openAggWriters opens the valid aggregate files for appending (creating them if create),
// cut to the steps held.
func (sg *segments) openAggWriters(create bool) error {
	steps := len(sg.starts) - 1
	for _, a := range sg.aggs {
		if a.stale != nil {
			continue
		}
		f, err := openAggWriter(a, create, steps)
		if err != nil {
			return fmt.Errorf("aggregates of layer %q: %w", a.layer, err)
		}
		a.out = f
	}
	return nil
}

func openAggWriter(a *aggFile, create bool, steps int) (*os.File, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(a.path, flag, 0o644)
	if err != nil {
		return nil, err
	}
	if create {
		_, err = f.Write(a.header())
	}
	if err == nil {
		err = f.Truncate(a.size(steps))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkAggs marks the aggregate files that cannot serve the committed steps as stale: a
// missing file, another header, one shorter than the steps, or a last step whose checksum
// or token count is wrong. The other steps are checked when first read.
func (sg *segments) checkAggs(writable bool) {
	c := len(sg.starts) - 1
	msg := "aggregate file is stale; a read-write open rebuilds it"
	if writable {
		msg = "aggregate file is stale and will be rebuilt from the database"
	}
	for _, a := range sg.aggs {
		if a.stale = a.check(c, sg.starts); a.stale != nil {
			logDerived(a.stale, msg, "layer", a.layer, "reason", a.stale)
		}
	}
}

func (a *aggFile) check(c int, starts []int64) error {
	f, err := os.Open(a.path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	head := make([]byte, aggHeader)
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != string(a.header()) {
		return fmt.Errorf("%s: bad header", a.path)
	}
	if fi.Size() < a.size(c) {
		return fmt.Errorf("%s: holds %d of %d steps", a.path, (fi.Size()-aggHeader)/a.recBytes(), c)
	}
	if c == 0 {
		return nil
	}
	rec := make([]byte, a.recBytes())
	if _, err := f.ReadAt(rec, a.size(c-1)); err != nil {
		return err
	}
	return a.verify(rec, c-1, int(starts[c]-starts[c-1]))
}

// verify checks step k's record against its checksum and token count.
func (a *aggFile) verify(rec []byte, k, tokens int) error {
	if crc32.Checksum(rec[aggPrefix:], crcTable) != binary.LittleEndian.Uint32(rec) {
		return fmt.Errorf("aggregates of layer %q: step %d: checksum mismatch (%s; remove it and open the directory read-write to rebuild it)", a.layer, k+1, a.path)
	}
	if got := int(binary.LittleEndian.Uint32(rec[4:])); got != tokens {
		return fmt.Errorf("aggregates of layer %q: step %d: %d tokens, the memory %d (%s)", a.layer, k+1, got, tokens, a.path)
	}
	return nil
}

// staleAggs reports whether some aggregate file needs a rebuild.
func (sg *segments) staleAggs() bool {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	for _, a := range sg.aggs {
		if a.stale != nil {
			return true
		}
	}
	return false
}

// refreshAggs rebuilds the stale aggregate files of open segments, holding the writer side
// and waiting for every step handed to the writer, so the files cover all the segments hold.
func (s *Store) refreshAggs(sg *segments, progress func(layer string, done, total int)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.flush(s.lastAppended()); err != nil {
		return err
	}
	return s.rebuildAggs(sg, progress)
}

// rebuildAggs writes every stale aggregate file anew from the database's steps 1..n (all
// the segments hold), into <layer>.agg.building first, then moves it in place. The
// caller holds the writer side, so no step is appended meanwhile.
func (s *Store) rebuildAggs(sg *segments, progress func(layer string, done, total int)) error {
	if err := s.vectorsInDB("building the aggregates"); err != nil {
		return err
	}
	n := sg.steps()
	infos, err := s.stepInfos(n)
	if err != nil {
		return err
	}
	for li, a := range sg.aggs {
		sg.mu.Lock()
		stale := a.stale
		sg.mu.Unlock()
		if stale == nil {
			continue
		}
		if err := room(s.dir, a.size(n)+diskSlack); err != nil {
			return err
		}
		if err := s.buildAgg(a, li, infos, progress); err != nil {
			return fmt.Errorf("%s: building aggregates of layer %q: %w", s.dir, a.layer, err)
		}
		f, err := openAggWriter(a, false, n)
		if err != nil {
			return err
		}
		sg.mu.Lock()
		a.out, a.stale, a.m = f, nil, &mappedFile{path: a.path}
		sg.mu.Unlock()
		a.mu.Lock()
		a.checked = nil
		a.mu.Unlock()
	}
	return nil
}

// buildAgg writes one layer's aggregate file from the database.
func (s *Store) buildAgg(a *aggFile, li int, infos []lm.StepInfo, progress func(layer string, done, total int)) error {
	tmp := a.path + ".building"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := bw.Write(a.header()); err != nil {
		return err
	}
	n := len(infos)
	var keys, grads []float32
	err = s.db.View(func(txn *badger.Txn) error {
		return scanSteps(txn, layerPrefix(li), n, func(t int, b []byte) error {
			tok := infos[t-1].Tokens()
			keys, grads = grow(keys, tok*a.din), grow(grads, tok*a.dout)
			if err := decodeLayer(b, keys, grads); err != nil {
				return fmt.Errorf("step %d: %w", t, err)
			}
			if _, err := bw.Write(aggRecord(a.din, a.dout, tok, keys, grads)); err != nil {
				return err
			}
			if progress != nil {
				progress(a.layer, t, n)
			}
			return nil
		})
	})
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, a.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(a.path))
	}
	return err
}

// aggView is a layer's aggregates of the first steps of a memory, read in place.
type aggView struct {
	file *aggFile
	data []byte
}

// aggView maps layer li's aggregates of the first steps, or says why there are none.
func (sg *segments) aggView(li, steps int) (*aggView, error) {
	sg.mu.Lock()
	a := sg.aggs[li]
	stale, m := a.stale, a.m
	sg.mu.Unlock()
	if stale != nil {
		return nil, stale
	}
	data, err := m.view(a.size(steps))
	if err != nil {
		return nil, err
	}
	return &aggView{file: a, data: data}, nil
}

// step returns step k's (0-based) G [DOut, DIn], K [DIn] and S [DOut], verifying its checksum and
// token count the first time it is read.
func (v *aggView) step(k, tokens int) (g, keySum, gradSum []float64, err error) {
	a := v.file
	rec := v.data[aggHeader+int64(k)*a.recBytes():][:a.recBytes()]
	a.mu.Lock()
	ok := k < len(a.checked) && a.checked[k]
	a.mu.Unlock()
	if !ok {
		if err := a.verify(rec, k, tokens); err != nil {
			return nil, nil, nil, err
		}
		a.mu.Lock()
		for len(a.checked) <= k {
			a.checked = append(a.checked, false)
		}
		a.checked[k] = true
		a.mu.Unlock()
	}
	pay := asF64(rec[aggPrefix:])
	return pay[:a.dout*a.din], pay[a.dout*a.din : a.dout*a.din+a.din], pay[a.dout*a.din+a.din:], nil
}

func asF64(b []byte) []float64 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float64)(unsafe.Pointer(&b[0])), len(b)/8)
}
