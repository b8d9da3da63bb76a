package dualmem

//go:noescape
func widenI8AVX(dst *float32, src *int8, n int)

//go:noescape
func mulF32AVX(dst, a, b *float32, n int)

//go:noescape
func outsideAVX(v *float32, n int, lo, hi float32) uint64

// widenI8 sets dst[i] = float32(src[i]) (len(dst) ≥ len(src)).
func widenI8(dst []float32, src []int8) {
	n := len(src) &^ 15
	if haveAVX2 && n > 0 {
		_ = dst[n-1]
		widenI8AVX(&dst[0], &src[0], n)
	}
	widenI8Go(dst[n:], src[n:])
}

// mulF32 sets dst[i] = a[i]·b[i] for i < len(dst) (a and b at least as long).
func mulF32(dst, a, b []float32) {
	n := len(dst) &^ 7
	if haveAVX2 && n > 0 {
		_, _ = a[n-1], b[n-1]
		mulF32AVX(&dst[0], &a[0], &b[0], n)
	}
	mulF32Go(dst[n:], a[n:], b[n:])
}

// outside has bit i set unless lo < v[i] < hi, for the first 64 values of v at most.
func outside(v []float32, lo, hi float32) uint64 {
	v = v[:min(len(v), 64)]
	n := len(v) &^ 7
	var m uint64
	if haveAVX2 && n > 0 {
		m = outsideAVX(&v[0], n, lo, hi)
	}
	return m | outsideGo(v[n:], lo, hi)<<n
}
