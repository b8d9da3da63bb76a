package dualmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/spotlight-lm/spotlight/lm"
)

// Key layout. Step numbers are big-endian so a prefix scan returns steps in order. Every
// value that can be large is a "blob": chunks keyed base+uint32(chunk), chunk 0 starting
// with the blob's total length, so a shorter rewrite never picks up stale chunks.
var (
	keyMagic     = []byte("spotlight.magic")
	keyMeta      = []byte("spotlight.meta")
	keyCommitted = []byte("spotlight.committed")
	magicValue   = []byte("spotlight-dualmem")
)

const (
	pCorpus     = 'c' // blob: the corpus bytes
	pInitial    = 'w' // + layer(2): blob of W then B, float32
	pHeader     = 'h' // + step(8): lm.StepInfo, fixed size
	pTokens     = 'o' // + step(8): blob of offsets (int64) then targets (int32)
	pLayer      = 'l' // + layer(2) + step(8): blob of the layer's keys then grads
	pCheckpoint = 'k' // blob: the last committed checkpoint
	pKept       = 'K' // + step(8): blob of a checkpoint kept for retraining (checkpoints.go)

	blobHeader = 8

	layerHeader = 8 // precision, sparse flags, 2 spare bytes, key and grad f16 exponents
	infoSize    = 28
)

// chunkSize bounds one stored value, well under the value-log file size (a variable so
// tests can exercise multi-chunk blobs).
var chunkSize = 32 << 20

// stepChunk bounds one stored value of a step's layer record. Badger encodes each value into
// a buffer it grows for the largest one and then copies it into its value log: chunks this
// small keep that buffer small and in the cache between the two copies (of 64 KiB to 4 MiB,
// 256 KiB took the least CPU time per step).
var stepChunk = 256 << 10

var errStop = errors.New("stop scan")

func layerPrefix(layer int) []byte { return []byte{pLayer, byte(layer >> 8), byte(layer)} }

func stepKey(prefix []byte, step int) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(step))
}

func initialKey(layer int) []byte { return []byte{pInitial, byte(layer >> 8), byte(layer)} }

// newBlob allocates a blob buffer with room for its length header before n payload bytes.
func newBlob(n int) []byte { return make([]byte, blobHeader+n) }

// blobEntries splits a buffer from newBlob into chunk entries under base, without copying.
func blobEntries(base, buf []byte) []*badger.Entry {
	binary.LittleEndian.PutUint64(buf, uint64(len(buf)-blobHeader))
	return appendChunks(nil, base, 0, buf, chunkSize, 0)
}

// appendChunks appends data, split into values of size bytes, as the chunks of the blob under
// base numbered from first on, without copying. A last chunk shorter than tail is joined to
// the one before it: a value under the value threshold would be stored in the LSM tree.
func appendChunks(es []*badger.Entry, base []byte, first int, data []byte, size, tail int) []*badger.Entry {
	for at, i := 0, first; at == 0 || at < len(data); i++ {
		end := min(at+size, len(data))
		if len(data)-end < tail {
			end = len(data)
		}
		key := binary.BigEndian.AppendUint32(append([]byte(nil), base...), uint32(i))
		es = append(es, badger.NewEntry(key, data[at:end]))
		if at = end; end == 0 {
			break
		}
	}
	return es
}

// scanBlobs calls fn with each complete blob whose base starts with prefix, from base seek
// on, in key order. data is only valid during the call. fn may return errStop.
func scanBlobs(txn *badger.Txn, prefix, seek []byte, fn func(base, data []byte) error) error {
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = prefix
	it := txn.NewIterator(opt)
	defer it.Close()
	var pending []byte // a multi-chunk blob being assembled
	var asm []byte     // pending's memory, reused from blob to blob
	var want int
	for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		key := item.Key()
		if len(key) < len(prefix)+4 {
			return fmt.Errorf("corrupt key %q", key)
		}
		base, chunk := key[:len(key)-4], binary.BigEndian.Uint32(key[len(key)-4:])
		err := item.Value(func(v []byte) error {
			switch {
			case chunk == 0:
				if len(v) < blobHeader {
					return fmt.Errorf("corrupt blob %q", base)
				}
				want = int(binary.LittleEndian.Uint64(v))
				if want <= len(v)-blobHeader {
					pending = nil
					return fn(base, v[blobHeader:blobHeader+want])
				}
				if cap(asm) < want {
					asm = make([]byte, 0, want)
				}
				pending = append(asm[:0], v[blobHeader:]...)
			case pending != nil:
				pending = append(pending, v[:min(len(v), want-len(pending))]...)
				if len(pending) == want {
					data := pending
					pending = nil
					return fn(base, data)
				}
			}
			return nil // a stale chunk past the end of a rewritten blob
		})
		if err != nil {
			return err
		}
	}
	if pending != nil {
		return fmt.Errorf("blob truncated: %d of %d bytes", len(pending), want)
	}
	return nil
}

// readBlob reads the single blob stored under base; badger.ErrKeyNotFound if absent.
func readBlob(txn *badger.Txn, base []byte) ([]byte, error) {
	var out []byte
	err := scanBlobs(txn, base, base, func(b, data []byte) error {
		if len(b) != len(base) {
			return nil
		}
		out = append([]byte{}, data...)
		return errStop
	})
	if err == nil {
		return nil, badger.ErrKeyNotFound
	}
	if err != errStop {
		return nil, err
	}
	return out, nil
}

func encodeInfo(si lm.StepInfo) []byte {
	b := make([]byte, 0, infoSize)
	b = binary.BigEndian.AppendUint64(b, uint64(si.Step))
	for _, f := range []float32{si.LR, si.Clip, si.Loss} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(si.Rows))
	return binary.LittleEndian.AppendUint32(b, uint32(si.Ctx))
}

func decodeInfo(b []byte) (lm.StepInfo, error) {
	if len(b) != infoSize {
		return lm.StepInfo{}, fmt.Errorf("corrupt step record (%d bytes)", len(b))
	}
	f := func(i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[i:])) }
	return lm.StepInfo{
		Step: int(binary.BigEndian.Uint64(b)),
		LR:   f(8), Clip: f(12), Loss: f(16),
		Rows: int(binary.LittleEndian.Uint32(b[20:])),
		Ctx:  int(binary.LittleEndian.Uint32(b[24:])),
	}, nil
}

func encodeTokens(offsets []int64, targets []int32) []byte {
	buf := newBlob(12 * len(offsets))
	p := buf[blobHeader:]
	for i, o := range offsets {
		binary.LittleEndian.PutUint64(p[8*i:], uint64(o))
	}
	p = p[8*len(offsets):]
	for i, t := range targets {
		binary.LittleEndian.PutUint32(p[4*i:], uint32(t))
	}
	return buf
}

func decodeTokens(b []byte, offsets []int64, targets []int32) error {
	n := len(offsets)
	if len(b) != 12*n || len(targets) != n {
		return fmt.Errorf("corrupt token record: %d bytes for %d tokens", len(b), n)
	}
	for i := range offsets {
		offsets[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	b = b[8*n:]
	for i := range targets {
		targets[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return nil
}

func precisionBytes(p Precision) int {
	if p == F16 {
		return 2
	}
	return 4
}

// encodeLayer stores keys then grads; f16 blocks carry a power-of-two scale each, and a
// float32 array with many zeros is stored sparse (sparse.go), flagged in the header.
func encodeLayer(p Precision, ls lm.LayerStep) []byte { return encodeLayerInto(nil, p, ls) }

// Flags of a float32 layer record's header byte 1: which arrays are sparse.
const (
	sparseKeys  = 1
	sparseGrads = 2
)

// layerFlags is the header's sparse flags for ls stored at precision p.
func layerFlags(p Precision, ls lm.LayerStep) byte {
	if p == F16 {
		return 0
	}
	var f byte
	if worthSparse(ls.Keys) {
		f |= sparseKeys
	}
	if worthSparse(ls.Grads) {
		f |= sparseGrads
	}
	return f
}

// encodeLayerInto is encodeLayer writing into buf when it has the capacity (the writer
// reuses one buffer per layer instead of allocating and zeroing megabytes every step).
func encodeLayerInto(buf []byte, p Precision, ls lm.LayerStep) []byte {
	return encodeFlagged(buf, p, ls, layerFlags(p, ls))
}

func encodeFlagged(buf []byte, p Precision, ls lm.LayerStep, flags byte) []byte {
	eb := precisionBytes(p)
	arrays := [2][]float32{ls.Keys, ls.Grads}
	n := blobHeader + layerHeader
	for i, v := range arrays {
		if flags&(1<<i) != 0 {
			n += sparseMaxSize(len(v))
		} else {
			n += eb * len(v)
		}
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	clear(buf[:blobHeader+layerHeader])
	h := buf[blobHeader:]
	h[0] = byte(eb)
	h[1] = flags
	if p == F16 {
		ke, ge := f16Exponent(maxAbs(ls.Keys)), f16Exponent(maxAbs(ls.Grads))
		binary.LittleEndian.PutUint16(h[4:], uint16(ke))
		binary.LittleEndian.PutUint16(h[6:], uint16(ge))
		putF16s(h[layerHeader:], ls.Keys, ke)
		putF16s(h[layerHeader+2*len(ls.Keys):], ls.Grads, ge)
		return buf
	}
	at := blobHeader + layerHeader
	for i, v := range arrays {
		if flags&(1<<i) != 0 {
			at += encodeSparse(buf[at:], v)
		} else {
			putF32s(buf[at:], v)
			at += 4 * len(v)
		}
	}
	return buf[:at]
}

// layerEntries makes the chunk entries of one step's record of a layer under base: the blob
// encodeLayer makes, in chunks of about stepChunk bytes. A dense float32 record on a
// little-endian machine is stored as its header chunk followed by chunks of the step's own
// key and gradient vectors, so Badger's copy is the only one; other records, and those whose
// keys or grads would make a value too short for the value log, are encoded into buf (reused
// when it has the capacity), which is returned for the next step. sparse allows sparse
// arrays (the store's format has them). The entries use ls's vectors (or buf) until Badger
// has written them.
func layerEntries(base []byte, p Precision, ls lm.LayerStep, buf []byte, sparse bool) ([]*badger.Entry, []byte) {
	tail := min(valueThreshold, stepChunk)
	var flags byte
	if sparse {
		flags = layerFlags(p, ls)
	}
	if p == F16 || flags != 0 || !nativeLittleEndian() || 4*min(len(ls.Keys), len(ls.Grads)) < tail {
		buf = encodeFlagged(buf, p, ls, flags)
		binary.LittleEndian.PutUint64(buf, uint64(len(buf)-blobHeader))
		return appendChunks(nil, base, 0, buf, stepChunk, tail), buf
	}
	head := make([]byte, blobHeader+layerHeader)
	binary.LittleEndian.PutUint64(head, uint64(layerHeader+4*(len(ls.Keys)+len(ls.Grads))))
	head[blobHeader] = 4
	es := []*badger.Entry{badger.NewEntry(binary.BigEndian.AppendUint32(append([]byte(nil), base...), 0), head)}
	es = appendChunks(es, base, len(es), bytesOf(ls.Keys), stepChunk, tail)
	return appendChunks(es, base, len(es), bytesOf(ls.Grads), stepChunk, tail), buf
}

// decodeLayer fills keys and grads (their lengths give the expected counts).
func decodeLayer(b []byte, keys, grads []float32) error {
	if len(b) < layerHeader {
		return errors.New("corrupt layer record")
	}
	eb, flags := int(b[0]), b[1]
	bad := fmt.Errorf("corrupt layer record: %d bytes for %d+%d values", len(b), len(keys), len(grads))
	if eb != 2 && eb != 4 || flags&^(sparseKeys|sparseGrads) != 0 || eb == 2 && flags != 0 {
		return bad
	}
	body := b[layerHeader:]
	if eb == 2 {
		if len(body) != 2*(len(keys)+len(grads)) {
			return bad
		}
		getF16s(keys, body, int16(binary.LittleEndian.Uint16(b[4:])))
		getF16s(grads, body[2*len(keys):], int16(binary.LittleEndian.Uint16(b[6:])))
		return nil
	}
	for i, v := range [2][]float32{keys, grads} {
		sparse, size := flags&(1<<i) != 0, 4*len(v)
		if sparse {
			var err error
			if size, err = sparseSize(body, len(v)); err != nil {
				return bad
			}
		}
		if i == 1 && size != len(body) || size > len(body) {
			return bad
		}
		if sparse {
			decodeSparse(v, body)
		} else {
			getF32s(v, body[:size])
		}
		body = body[size:]
	}
	return nil
}

func maxAbs(xs []float32) float32 {
	var m float32
	for _, x := range xs {
		m = max(m, float32(math.Abs(float64(x))))
	}
	return m
}

func putF32s(dst []byte, src []float32) {
	if nativeLittleEndian() { // the stored layout is the memory layout
		copy(dst, bytesOf(src))
		return
	}
	for i, x := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(x))
	}
}

func getF32s(dst []float32, src []byte) {
	if nativeLittleEndian() {
		copy(bytesOf(dst), src)
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

func putF16s(dst []byte, src []float32, exp int16) {
	scale := math.Ldexp(1, -int(exp)) // exact in float64 for any float32 range
	for i, x := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], f32ToF16(float32(float64(x)*scale)))
	}
}

func getF16s(dst []float32, src []byte, exp int16) {
	scale := math.Ldexp(1, int(exp))
	for i := range dst {
		dst[i] = float32(float64(f16ToF32(binary.LittleEndian.Uint16(src[2*i:]))) * scale)
	}
}
