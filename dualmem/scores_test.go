package dualmem

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestScoresMatchScore(t *testing.T) {
	mem, meta := randomMemory(5000, 37, 11, 9)
	s := NewScanner(mem, meta)
	rng := rand.New(rand.NewPCG(1, 2))
	idx := []int32{0, 1, 4999, 2048, 77, 77}
	for _, q := range []Query{{X: randF32(rng, 37, 1), Token: 3}, {X: randF32(rng, 37, 1), U: randF32(rng, 11, 1), Token: -1}} {
		alpha, c := make([]float64, len(idx)), make([]float64, len(idx))
		s.Scores(q, idx, alpha, c)
		for i, j := range idx {
			wa, wc := s.Score(q, int(j))
			if math.Abs(alpha[i]-wa) > 1e-5*(1+math.Abs(wa)) || math.Abs(c[i]-wc) > 1e-5*(1+math.Abs(wc)) {
				t.Errorf("token %d: %g %g, Score %g %g", j, alpha[i], c[i], wa, wc)
			}
		}
	}
}

// TestScoresFourChains pins Scores to one float32 formula, bit for bit, whatever the
// dimensions (multiples of 4 or not, below 4) and however many tokens are listed: per token,
// products summed in four chains i mod 4, the rest into the first, then (s0+s1)+(s2+s3);
// or, where the scan's SIMD kernels serve the widths, theirs (lanes8).
func TestScoresFourChains(t *testing.T) {
	chains := func(a, b []float32) float32 {
		var s [4]float32
		i := 0
		for ; i+4 <= len(a); i += 4 {
			for l := range 4 {
				s[l] += float32(a[i+l] * b[i+l])
			}
		}
		for ; i < len(a); i++ {
			s[0] += float32(a[i] * b[i])
		}
		return (s[0] + s[1]) + (s[2] + s[3])
	}
	rng := rand.New(rand.NewPCG(8, 8))
	for _, dims := range [][2]int{{64, 256}, {64, 91}, {37, 11}, {3, 2}, {8, 5}, {4, 4}} {
		din, dout := dims[0], dims[1]
		mem, meta := randomMemory(3000, din, dout, 4)
		s := NewScanner(mem, meta)
		idx := make([]int32, 1+rng.IntN(60))
		for i := range idx {
			idx[i] = int32(rng.IntN(s.N))
		}
		for _, q := range []Query{{X: randF32(rng, din, 1), Token: dout - 1}, {X: randF32(rng, din, 1), U: randF32(rng, dout, 1), Token: -1}} {
			alpha, c := make([]float64, len(idx)), make([]float64, len(idx))
			s.Scores(q, idx, alpha, c)
			dot := chains
			if s.simdScores(q) {
				dot = lanes8
			}
			for i, j := range idx {
				a := float64(dot(mem.Keys[int(j)*din:][:din], q.X))
				g := mem.Grads[int(j)*dout:][:dout]
				proj := float64(g[max(q.Token, 0)])
				if q.Token < 0 {
					proj = float64(dot(g, q.U))
				}
				if wc := a * s.SW[s.StepIndex(int(j))] * proj; alpha[i] != a || c[i] != wc {
					t.Fatalf("d %v token %d: %v %v, want %v %v", dims, j, alpha[i], c[i], a, wc)
				}
			}
		}
	}
}

// The assembly kernel and its Go version agree bit for bit.
func TestDotLanes8(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 9))
	for _, n := range []int{4, 8, 64, 256} {
		k, x := randF32(rng, 8*n, 1), randF32(rng, n, 1)
		var rows [8]*float32
		for r := range rows {
			rows[r] = &k[r*n]
		}
		var got, want [32]float32
		dotLanes8(&rows, &x[0], n, &got)
		dotLanes8Go(&rows, &x[0], n, &want)
		if got != want {
			t.Fatalf("n=%d: %v, want %v", n, got, want)
		}
	}
}
