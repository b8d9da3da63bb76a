package dualmem

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// dotBlock sets out[i*nb+b] = keys[b]·xs[i] (query-major) for the nb keys (rows of d floats) of keys and the
// q queries (rows of d floats) of xs. Pure Go, register-blocked: 4 keys × 2 queries per
// inner loop (8 accumulators and 6 operands stay in registers on amd64).
func dotBlock(keys []float32, nb, d int, xs []float32, q int, out []float32) {
	b := 0
	for ; b+4 <= nb; b += 4 {
		k0 := keys[b*d : b*d+d]
		k1 := keys[(b+1)*d : (b+1)*d+d]
		k2 := keys[(b+2)*d : (b+2)*d+d]
		k3 := keys[(b+3)*d : (b+3)*d+d]
		i := 0
		for ; i+2 <= q; i += 2 {
			x0 := xs[i*d : i*d+d]
			x1 := xs[(i+1)*d : (i+1)*d+d]
			var s00, s01, s10, s11, s20, s21, s30, s31 float32
			for p, a0 := range k0 {
				a1, a2, a3 := k1[p], k2[p], k3[p]
				c0, c1 := x0[p], x1[p]
				s00 += a0 * c0
				s01 += a0 * c1
				s10 += a1 * c0
				s11 += a1 * c1
				s20 += a2 * c0
				s21 += a2 * c1
				s30 += a3 * c0
				s31 += a3 * c1
			}
			o0, o1 := out[i*nb+b:i*nb+b+4], out[(i+1)*nb+b:(i+1)*nb+b+4]
			o0[0], o0[1], o0[2], o0[3] = s00, s10, s20, s30
			o1[0], o1[1], o1[2], o1[3] = s01, s11, s21, s31
		}
		for ; i < q; i++ {
			x0 := xs[i*d : i*d+d]
			var s0, s1, s2, s3 float32
			for p, c := range x0 {
				s0 += k0[p] * c
				s1 += k1[p] * c
				s2 += k2[p] * c
				s3 += k3[p] * c
			}
			o0 := out[i*nb+b : i*nb+b+4]
			o0[0], o0[1], o0[2], o0[3] = s0, s1, s2, s3
		}
	}
	for ; b < nb; b++ {
		k0 := keys[b*d : b*d+d]
		for i := range q {
			x0 := xs[i*d : i*d+d]
			var s float32
			for p, c := range x0 {
				s += k0[p] * c
			}
			out[i*nb+b] = s
		}
	}
}

// gemmBlock computes the same as dotBlock with gonum's blas32.Gemm (assembly-backed
// dot/axpy kernels): out[q×nb] = xs[q×d] · keysᵀ.
func gemmBlock(keys []float32, nb, d int, xs []float32, q int, out []float32) {
	blas32.Gemm(blas.NoTrans, blas.Trans, 1,
		blas32.General{Rows: q, Cols: d, Stride: d, Data: xs[:q*d]},
		blas32.General{Rows: nb, Cols: d, Stride: d, Data: keys[:nb*d]},
		0, blas32.General{Rows: q, Cols: nb, Stride: nb, Data: out[:nb*q]})
}

// Kernel picks how a key block is multiplied by the queries.
type Kernel int

const (
	KernelAuto Kernel = iota // the faster one for the query count (measured by BenchmarkScan)
	KernelGo                 // dotBlock: pure Go, register-blocked
	KernelGemm               // gonum blas32.Gemm
	KernelSIMD               // AVX2/FMA assembly on amd64 (falls back to KernelGo)
)

func (k Kernel) fn(q int) func([]float32, int, int, []float32, int, []float32) {
	switch k {
	case KernelGo:
		return dotBlock
	case KernelGemm:
		return gemmBlock
	}
	return dotBlockAVX
}
