//go:build !amd64

package dualmem

// widenI8 sets dst[i] = float32(src[i]) (len(dst) ≥ len(src)).
func widenI8(dst []float32, src []int8) { widenI8Go(dst, src) }
