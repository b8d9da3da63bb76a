//go:build !amd64

package dualmem

func addOuter(g []float64, din, dout, n int, k64 []float64, grads []float32) {
	addOuterGemm(g, din, dout, n, k64, grads)
}
