package dualmem

import "golang.org/x/sys/cpu"

//go:noescape
func dot4xq(k *float32, kstride int, xs *float32, q int, d int, out *float32, ostride int)

//go:noescape
func dot8x1(k *[8]*float32, x *float32, d int, out *[8]float32)

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// simdDims reports whether dotBlockAVX and dotRows8 use the AVX2 kernels for rows of d
// floats, and so compute every product k·x with the same float32 arithmetic.
func simdDims(d int) bool { return haveAVX2 && d%8 == 0 && d > 0 }

// dotBlockAVX is dotBlock with an AVX2/FMA kernel (4 keys × 2 queries, 8 lanes of d per
// instruction) when the CPU has it and d is a multiple of 8. One assembly call covers four
// keys and every query; the last nb%4 keys go through dot8x1, which computes the same, so a
// key's α does not depend on where its block starts.
func dotBlockAVX(keys []float32, nb, d int, xs []float32, q int, out []float32) {
	if !simdDims(d) {
		dotBlock(keys, nb, d, xs, q, out)
		return
	}
	if nb == 0 || q == 0 {
		return
	}
	_ = keys[nb*d-1]
	_ = xs[q*d-1]
	_ = out[nb*q-1]
	b := 0
	for ; b+4 <= nb; b += 4 {
		dot4xq(&keys[b*d], d, &xs[0], q, d, &out[b], nb)
	}
	if b == nb {
		return
	}
	var rows [8]*float32
	for r := range rows {
		rows[r] = &keys[min(b+r, nb-1)*d]
	}
	var r [8]float32
	for i := range q {
		dot8x1(&rows, &xs[i*d], d, &r)
		copy(out[i*nb+b:(i+1)*nb], r[:nb-b])
	}
}

// dotRows8 sets out[r] = k[r]·x (d floats each) for eight rows anywhere in memory, with
// the arithmetic dotBlockAVX uses for a key and a query when simdDims(d).
func dotRows8(k *[8]*float32, x *float32, d int, out *[8]float32) { dot8x1(k, x, d, out) }
