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
			for kr := range 4 {
				out[(b+kr)*q+i] = r[2*kr]
				if xstride != 0 {
					out[(b+kr)*q+i+1] = r[2*kr+1]
				}
			}
		}
	}
	if b < nb {
		dotBlock(keys[b*d:], nb-b, d, xs, q, out[b*q:])
	}
}
