//go:build !amd64

package dualmem

func dotBlockAVX(keys []float32, nb, d int, xs []float32, q int, out []float32) {
	dotBlock(keys, nb, d, xs, q, out)
}

// simdDims is false: without the assembly kernels the scan and Scores keep their own
// arithmetic.
func simdDims(int) bool { return false }

func dotRows8(*[8]*float32, *float32, int, *[8]float32) { panic("dualmem: no SIMD kernel") }
