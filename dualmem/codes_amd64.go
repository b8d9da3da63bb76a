package dualmem

//go:noescape
func widenI8AVX(dst *float32, src *int8, n int)

// widenI8 sets dst[i] = float32(src[i]) (len(dst) ≥ len(src)).
func widenI8(dst []float32, src []int8) {
	n := len(src) &^ 15
	if haveAVX2 && n > 0 {
		_ = dst[n-1]
		widenI8AVX(&dst[0], &src[0], n)
	}
	widenI8Go(dst[n:], src[n:])
}
