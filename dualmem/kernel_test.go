package dualmem

import (
	"math"
	"math/rand/v2"
	"testing"
)

// fma32 is a·b+c rounded once to float32 (the FMA instruction's result): the product is
// exact in float64, and rounding the float64 sum again is right unless that sum sits
// exactly halfway between two float32 values while the exact sum does not.
func fma32(a, b, c float32) float32 {
	p, z := float64(a)*float64(b), float64(c)
	s := p + z
	bb := s - p
	e := (p - (s - bb)) + (z - bb) // s + e is the exact sum
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if (float64(r)+float64(other))/2 != s {
		return r
	}
	if (e > 0) == (other > r) {
		return other
	}
	return r
}

// lanes8 is the SIMD kernels' k·x: eight FMA chains over p mod 8, summed
// ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
func lanes8(k, x []float32) float32 {
	var l [8]float32
	for p := range k {
		l[p%8] = fma32(k[p], x[p], l[p%8])
	}
	return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

// TestFMA32 checks fma32 where rounding the float64 sum again goes wrong: a·b = 2⁻²⁴(1−2⁻⁴⁶)
// puts 1+2⁻²³ + a·b just below the midpoint 1+3·2⁻²⁴, which float64 rounds onto it and
// float32 then ties to even, up. The SIMD kernel (one FMA into a chain holding c) agrees.
func TestFMA32(t *testing.T) {
	u := float32(math.Ldexp(1, -23))
	a, b, c := u/2*(1+u), 1-u, 1+u
	for _, tc := range []struct{ a, b, c, want float32 }{
		{1, 1, 1, 2},
		{3, 5, -1, 14},
		{a, b, c, c},
		{-a, b, -c, -c},
		{a, -b, c, c}, // 1+2⁻²⁴+2⁻⁷⁰: just above the midpoint below c
	} {
		got := fma32(tc.a, tc.b, tc.c)
		if got != tc.want {
			t.Errorf("fma32(%g, %g, %g) = %.10g, want %.10g", tc.a, tc.b, tc.c, got, tc.want)
		}
		if !simdDims(16) {
			continue
		}
		k, x := make([]float32, 16), make([]float32, 16)
		k[0], x[0], k[8], x[8] = tc.c, 1, tc.a, tc.b
		rows := [8]*float32{&k[0], &k[0], &k[0], &k[0], &k[0], &k[0], &k[0], &k[0]}
		var hw [8]float32
		dotRows8(&rows, &x[0], 16, &hw)
		if hw[0] != got {
			t.Errorf("kernel: fma(%g, %g, %g) = %.10g, fma32 %.10g", tc.a, tc.b, tc.c, hw[0], got)
		}
	}
}

// TestSIMDKernels pins dotBlockAVX (every block length, so the padded last keys too, and any
// query count) and dotRows8 to lanes8, bit for bit: the scan's α and a scattered token's
// Scores are then the same numbers.
func TestSIMDKernels(t *testing.T) {
	if !simdDims(8) {
		t.Skip("no AVX2/FMA")
	}
	rng := rand.New(rand.NewPCG(7, 1))
	for _, d := range []int{8, 64, 256, 24} {
		for _, nb := range []int{1, 3, 4, 9, 33} {
			for _, q := range []int{1, 2, 3, 16} {
				keys, xs := randF32(rng, nb*d, 1), randF32(rng, q*d, 1)
				out := make([]float32, nb*q)
				dotBlockAVX(keys, nb, d, xs, q, out)
				for b := range nb {
					for i := range q {
						if want := lanes8(keys[b*d:(b+1)*d], xs[i*d:(i+1)*d]); out[i*nb+b] != want {
							t.Fatalf("d=%d nb=%d q=%d key %d query %d: %.9g, want %.9g", d, nb, q, b, i, out[i*nb+b], want)
						}
					}
				}
			}
			keys, x := randF32(rng, 8*d, 1), randF32(rng, d, 1)
			var rows [8]*float32
			for r := range rows {
				rows[r] = &keys[((r*5)%8)*d]
			}
			var got [8]float32
			dotRows8(&rows, &x[0], d, &got)
			for r := range rows {
				if want := lanes8(keys[((r*5)%8)*d:][:d], x); got[r] != want {
					t.Fatalf("d=%d row %d: %.9g, want %.9g", d, r, got[r], want)
				}
			}
		}
	}
}
