package dualmem

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
)

// A float32 array with many zeros is stored sparse, losslessly: in groups of 64 values, a
// word whose bits mark the zeros, a word whose bits mark which of those are -0, then the
// other values as they are. The ReLU between a block's ff1 and ff2 makes ff2's keys and
// ff1's gradients zero wherever the unit is off (about 90% of them in a trained model), and
// those two arrays are most of a step's bytes, so this cuts what the database writes and
// holds by about half. The read-optimised segment files stay dense.

const sparseGroup = 64

// sparseMinZeros is the share of zeros, over a sample, above which an array is stored
// sparse: the two masks cost 1/16 of the dense bytes, so below it sparse saves little and
// loses the dense record's zero-copy write.
const sparseMinZeros = 0.125

// sparseSample bounds how many leading values decide the encoding: either encoding is
// exact, so a sample only has to be representative, not complete.
const sparseSample = 8192

// worthSparse reports whether v should be stored sparse.
func worthSparse(v []float32) bool {
	s := v[:min(len(v), sparseSample)]
	if len(s) < sparseGroup {
		return false
	}
	zeros := 0
	for _, x := range s {
		if math.Float32bits(x)&0x7fffffff == 0 {
			zeros++
		}
	}
	return float64(zeros) >= sparseMinZeros*float64(len(s))
}

func sparseWords(n int) int { return (n + sparseGroup - 1) / sparseGroup }

// sparseMaxSize is the largest encoding of n values (none of them zero).
func sparseMaxSize(n int) int { return 16*sparseWords(n) + 4*n }

// encodeSparse writes v's sparse encoding at the start of dst, which must hold
// sparseMaxSize(len(v)) bytes, and returns its length: every group's two masks, then the
// groups' other values, in order.
func encodeSparse(dst []byte, v []float32) int {
	done, at := encodeSparseFull(dst, v, 16*sparseWords(len(v)))
	return encodeSparseGo(dst, v, done, at)
}

// encodeSparseGo encodes v's groups from first on, their values from dst[at] on, and returns
// the end of the values.
func encodeSparseGo(dst []byte, v []float32, first, at int) int {
	for w := first; w < sparseWords(len(v)); w++ {
		g := v[w*sparseGroup : min((w+1)*sparseGroup, len(v))]
		var zero, neg uint64
		for i, x := range g {
			b := math.Float32bits(x)
			z := uint64((b&0x7fffffff - 1) >> 31) // 1 for ±0, without a branch
			zero |= z << i
			neg |= (z & uint64(b>>31)) << i
		}
		binary.LittleEndian.PutUint64(dst[16*w:], zero)
		binary.LittleEndian.PutUint64(dst[16*w+8:], neg)
		for rest := ^zero & (1<<len(g) - 1); rest != 0; rest &= rest - 1 {
			binary.LittleEndian.PutUint32(dst[at:], math.Float32bits(g[bits.TrailingZeros64(rest)]))
			at += 4
		}
	}
	return at
}

var errSparse = errors.New("corrupt sparse array")

// sparseSize is the length of the sparse encoding of n values at the start of src,
// checked against src's masks and length.
func sparseSize(src []byte, n int) (int, error) {
	words := sparseWords(n)
	if len(src) < 16*words {
		return 0, errSparse
	}
	size := 16 * words
	for w := range words {
		zero := binary.LittleEndian.Uint64(src[16*w:])
		neg := binary.LittleEndian.Uint64(src[16*w+8:])
		width := min(sparseGroup, n-w*sparseGroup)
		valid := uint64(1)<<width - 1 // all ones at width 64: a shift past the width gives 0
		if zero&^valid != 0 || neg&^zero != 0 {
			return 0, errSparse
		}
		size += 4 * (width - bits.OnesCount64(zero))
	}
	if size > len(src) {
		return 0, errSparse
	}
	return size, nil
}

// decodeSparse fills dst from an encoding whose size sparseSize has checked.
func decodeSparse(dst []float32, src []byte) {
	words := sparseWords(len(dst))
	at := 16 * words
	for w := range words {
		g := dst[w*sparseGroup : min((w+1)*sparseGroup, len(dst))]
		zero := binary.LittleEndian.Uint64(src[16*w:])
		neg := binary.LittleEndian.Uint64(src[16*w+8:])
		clear(g)
		for ; neg != 0; neg &= neg - 1 {
			g[bits.TrailingZeros64(neg)] = float32(math.Copysign(0, -1))
		}
		for rest := ^zero & (1<<len(g) - 1); rest != 0; rest &= rest - 1 {
			g[bits.TrailingZeros64(rest)] = math.Float32frombits(binary.LittleEndian.Uint32(src[at:]))
			at += 4
		}
	}
}
