package dualmem

import "golang.org/x/sys/cpu"

//go:noescape
func sparseEncodeAVX(masks, vals *byte, src *float32, groups int, lut *[256][8]int32) int

var haveSparseAVX = cpu.X86.HasAVX2 && cpu.X86.HasPOPCNT

// sparseLUT[keep] lists the lanes set in keep, lowest first: the permutation that packs
// them to the front of a vector.
var sparseLUT = func() (t [256][8]int32) {
	for keep := range t {
		n := 0
		for lane := range 8 {
			if keep&(1<<lane) != 0 {
				t[keep][n] = int32(lane)
				n++
			}
		}
	}
	return t
}()

// encodeSparseFull encodes v's full groups of 64, their values from dst[at] on, and returns
// how many it encoded and the end of their values (0 groups where the CPU lacks AVX2, left to
// the portable loop); see encodeSparse for dst's layout.
func encodeSparseFull(dst []byte, v []float32, at int) (groups, end int) {
	groups = len(v) / sparseGroup
	if !haveSparseAVX || groups == 0 {
		return 0, at
	}
	_ = dst[at+4*sparseGroup*groups-1] // the vector stores stay in the values' room
	return groups, at + sparseEncodeAVX(&dst[0], &dst[at], &v[0], groups, &sparseLUT)
}
