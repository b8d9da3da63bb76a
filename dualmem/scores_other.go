//go:build !amd64

package dualmem

func dotLanes4(k0, k1, k2, k3, x *float32, n int, out *[16]float32) {
	dotLanes4Go(k0, k1, k2, k3, x, n, out)
}
