package dualmem

//go:noescape
func rank4f64(dst *float64, rows, d int, k *float64, gr *float32, gstride int)

// addOuter adds Σ_j g_j k_jᵀ over n tokens to G [dout, din]: k64 holds the keys as float64
// [n, din], grads the float32 gradients [n, dout]. Four tokens at a time go through an
// AVX2/FMA kernel when the CPU has it and din is a multiple of 16; the rest, and other
// machines, through gonum's Gemm.
func addOuter(g []float64, din, dout, n int, k64 []float64, grads []float32) {
	if !haveAVX2 || din%16 != 0 || n < 4 {
		addOuterGemm(g, din, dout, n, k64, grads)
		return
	}
	_ = g[dout*din-1]
	_ = k64[n*din-1]
	_ = grads[n*dout-1]
	j := 0
	for ; j+4 <= n; j += 4 {
		rank4f64(&g[0], dout, din, &k64[j*din], &grads[j*dout], dout)
	}
	if j < n {
		addOuterGemm(g, din, dout, n-j, k64[j*din:], grads[j*dout:])
	}
}
