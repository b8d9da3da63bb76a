//go:build !amd64

package dualmem

func dotLanes8(k *[8]*float32, x *float32, n int, out *[32]float32) {
	dotLanes8Go(k, x, n, out)
}
