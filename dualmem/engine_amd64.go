package dualmem

import "golang.org/x/sys/cpu"

//go:noescape
func dot4x2(k *float32, kstride int, x *float32, xstride int, d int, out *[8]float32)

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotBlockAVX is dotBlock with an AVX2/FMA kernel (4 keys × 2 queries, 8 lanes of d per
// instruction) when the CPU has it and d is a multiple of 8.
func dotBlockAVX(keys []float32, nb, d int, xs []float32, q int, out []float32) {
	if !haveAVX2 || d%8 != 0 || d == 0 {
		dotBlock(keys, nb, d, xs, q, out)
		return
	}
	_ = keys[nb*d-1]
	_ = xs[q*d-1]
	_ = out[nb*q-1]
	var r [8]float32
	b := 0
	for ; b+4 <= nb; b += 4 {
		k := &keys[b*d]
		for i := 0; i < q; i += 2 {
			xstride := d
			if i+1 == q { // odd query count: pair the last query with itself
				xstride = 0
			}
			dot4x2(k, d, &xs[i*d], xstride, d, &r)
			o := out[i*nb+b : i*nb+b+4]
			o[0], o[1], o[2], o[3] = r[0], r[2], r[4], r[6]
			if xstride != 0 {
				o = out[(i+1)*nb+b : (i+1)*nb+b+4]
				o[0], o[1], o[2], o[3] = r[1], r[3], r[5], r[7]
			}
		}
	}
	for ; b < nb; b++ { // the last nb%4 keys
		k := keys[b*d : (b+1)*d]
		for i := range q {
			var s float32
			for p, x := range xs[i*d : (i+1)*d] {
				s += k[p] * x
			}
			out[i*nb+b] = s
		}
	}
}
