//go:build !amd64

package dualmem

// widenI8 sets dst[i] = float32(src[i]) (len(dst) ≥ len(src)).
func widenI8(dst []float32, src []int8) { widenI8Go(dst, src) }

// mulF32 sets dst[i] = a[i]·b[i] for i < len(dst) (a and b at least as long).
func mulF32(dst, a, b []float32) { mulF32Go(dst, a, b) }

// outside has bit i set unless lo < v[i] < hi, for the first 64 values of v at most.
func outside(v []float32, lo, hi float32) uint64 { return outsideGo(v[:min(len(v), 64)], lo, hi) }
