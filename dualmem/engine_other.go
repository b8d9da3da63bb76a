//go:build !amd64

package dualmem

func dotBlockAVX(keys []float32, nb, d int, xs []float32, q int, out []float32) {
	dotBlock(keys, nb, d, xs, q, out)
}
