package dualmem

//go:noescape
func dotLanes8(k *[8]*float32, x *float32, n int, out *[32]float32)
