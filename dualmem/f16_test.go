package dualmem

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestF16RoundTripAllHalves(t *testing.T) {
	for h := range 1 << 16 {
		f := f16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Fatalf("%#04x decoded to NaN", h)
			}
			continue
		}
		if got := f32ToF16(f); got != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, got)
		}
	}
}

// refF16 rounds a finite float32 to the nearest half by search, ties to even.
func refF16(f float32, pos []float64) uint16 {
	x := math.Abs(float64(f))
	var sign uint16
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	if x >= 65536 {
		return sign | 0x7c00
	}
	i := sort.SearchFloat64s(pos, x) // pos[i] >= x
	if pos[i] == x {
		return sign | uint16(i)
	}
	lo, hi := pos[i-1], pos[i]
	switch {
	case x-lo < hi-x:
		return sign | uint16(i-1)
	case x-lo > hi-x:
		return sign | uint16(i)
	case (i-1)%2 == 0:
		return sign | uint16(i-1)
	}
	return sign | uint16(i)
}

func TestF32ToF16MatchesReference(t *testing.T) {
	// All finite non-negative halves (increasing with their bits), then 65536 in the place of
	// Inf: rounding treats Inf as the next step after the largest half.
	pos := make([]float64, 0x7c01)
	for h := range 0x7c00 {
		pos[h] = float64(f16ToF32(uint16(h)))
	}
	pos[0x7c00] = 65536
	special := []float32{0, 65504, 65519.99, 65520, 1e9, 6e-8, 3e-8, 2.9802322e-08, 2.9802326e-08,
		1 + 1.0/2048, 1 + 3.0/2048, 6.1035156e-05, 6.1e-05, 1e-30}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 200000 {
		special = append(special, float32(math.Ldexp(rng.Float64(), rng.IntN(44)-28)))
	}
	for _, f := range special {
		for _, v := range []float32{f, -f} {
			if got, want := f32ToF16(v), refF16(v, pos); got != want {
				t.Fatalf("f32ToF16(%g) = %#04x, want %#04x", v, got, want)
			}
		}
	}
	if h := f32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Fatalf("NaN -> %#04x", h)
	}
	if f32ToF16(float32(math.Inf(-1))) != 0xfc00 {
		t.Fatal("-Inf")
	}
}
