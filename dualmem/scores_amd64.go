package dualmem

//go:noescape
func dotLanes4(k0, k1, k2, k3, x *float32, n int, out *[16]float32)
