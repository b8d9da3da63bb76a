package dualmem

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The AVX2 widening of int8 codes gives what the Go loop gives, for every length (the
// kernel takes multiples of 16, the Go loop the rest) and every code value.
func TestWidenI8(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{0, 1, 15, 16, 17, 64, 91, 256, 64 * 91} {
		src := make([]int8, n)
		for i := range src {
			src[i] = int8(rng.IntN(256) - 128)
		}
		if n >= 2 {
			src[0], src[1] = -128, 127
		}
		got, want := make([]float32, n+3), make([]float32, n+3)
		for i := range got {
			got[i], want[i] = -1, -1
		}
		widenI8(got, src)
		widenI8Go(want, src)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("n=%d: [%d] = %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}

// The AVX products are the Go loop's, bit for bit, for every length (the kernel takes
// multiples of 8) and for zeros, infinities and NaNs.
func TestMulF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.NaN()), 1e-45, 3e38}
	for _, n := range []int{0, 1, 7, 8, 9, 64, 91, 128, 512} {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()*100), float32(rng.NormFloat64())
			if i < len(special) {
				a[i], b[i] = special[i], special[(i+2)%len(special)]
			}
		}
		got, want := make([]float32, n), make([]float32, n)
		mulF32(got, a, b)
		mulF32Go(want, a, b)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: [%d] = %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}

// The AVX mask of the values outside (lo, hi) is the Go loop's for every length up to 64,
// with values on the ends, infinities and NaNs (outside).
func TestOutside(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	for it := range 2000 {
		n := it % 65
		lo, hi := float32(rng.NormFloat64()), float32(rng.NormFloat64()+1)
		v := make([]float32, n+9) // past n: values outside that must not count
		for i := range v {
			switch rng.IntN(6) {
			case 0:
				v[i] = lo
			case 1:
				v[i] = hi
			case 2:
				v[i] = float32(math.NaN())
			case 3:
				v[i] = float32(math.Inf(rng.IntN(2)*2 - 1))
			default:
				v[i] = float32(rng.NormFloat64() + 0.5)
			}
		}
		got, want := outside(v[:n], lo, hi), outsideGo(v[:n], lo, hi)
		if got != want {
			t.Fatalf("n=%d: mask %x, want %x", n, got, want)
		}
		var ref uint64
		for i, x := range v[:n] {
			if math.IsNaN(float64(x)) || x <= lo || x >= hi {
				ref |= 1 << i
			}
		}
		if want != ref {
			t.Fatalf("n=%d: Go mask %x, want %x", n, want, ref)
		}
	}
}

// Every v that pruneRange leaves out passes read's own test as pruned: |α̃| + E < lim, in
// the float64 arithmetic read uses; an empty range where nothing can be pruned.
func TestPruneRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for it := range 20000 {
		scale := math.Pow(10, float64(rng.IntN(12)-6))
		cx := scale * rng.NormFloat64()
		e := scale * math.Abs(rng.NormFloat64()) * 0.1
		lim := scale * (rng.Float64()*3 - 0.5)
		if it%7 == 0 {
			lim = e * (1 + 1e-13) // next to nothing prunable
		}
		lo, hi := pruneRange(cx, e, lim)
		if !(lo < hi) {
			continue
		}
		vs := []float32{math.Nextafter32(lo, hi), math.Nextafter32(hi, lo), (lo + hi) / 2}
		for range 5 {
			vs = append(vs, lo+float32(rng.Float64())*(hi-lo))
		}
		for _, v := range vs {
			if !(v > lo && v < hi) {
				continue
			}
			a := cx + float64(v)/127
			ae := e + relSlack*(math.Abs(a)+e)
			if math.Abs(a)+ae >= lim {
				t.Fatalf("cx %g e %g lim %g: v %g in (%g, %g) but |α̃|+E = %g", cx, e, lim, v, lo, hi, math.Abs(a)+ae)
			}
		}
	}
	if lo, hi := pruneRange(1, 2, 1); lo < hi {
		t.Fatalf("lim below e: range (%g, %g), want empty", lo, hi)
	}
	if lo, hi := pruneRange(0, 0, math.Inf(1)); lo < hi {
		t.Fatalf("lim +Inf: range (%g, %g), want empty", lo, hi)
	}
}
