package dualmem

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sgdStep applies one PyTorch SGD step (momentum mu, coupled weight decay lambda) in place.
func sgdStep(w, buf, grad []float64, clip, lr, mu, lambda float64) {
	for j := range w {
		d := clip*grad[j] + lambda*w[j]
		buf[j] = mu*buf[j] + d
		w[j] -= lr * buf[j]
	}
}

func TestCoefficientsMatchSGD(t *testing.T) {
	cases := []struct {
		name       string
		mu, lambda float64
		steps      int
	}{
		{"plain", 0, 0, 30},
		{"momentum", 0.9, 0, 30},
		{"decay", 0, 0.05, 30},
		{"both", 0.9, 0.01, 40},
		{"strong", 0.5, 0.3, 25},
		{"one step", 0.9, 0.1, 1},
		{"no steps", 0.9, 0.1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.steps)))
			const n = 12 // a 3×4 matrix, flattened
			w0 := make([]float64, n)
			for j := range w0 {
				w0[j] = rng.NormFloat64()
			}
			w := append([]float64(nil), w0...)
			buf := make([]float64, n)
			lr := make([]float64, tc.steps)
			clip := make([]float64, tc.steps)
			grads := make([][]float64, tc.steps)
			for s := range tc.steps {
				lr[s] = 0.01 + 0.2*rng.Float64()
				clip[s] = 0.2 + 0.8*rng.Float64()
				grads[s] = make([]float64, n)
				for j := range grads[s] {
					grads[s][j] = rng.NormFloat64()
				}
				sgdStep(w, buf, grads[s], clip[s], lr[s], tc.mu, tc.lambda)
			}
			a, beta := Coefficients(lr, tc.mu, tc.lambda)
			if len(beta) != tc.steps {
				t.Fatalf("len(beta) = %d, want %d", len(beta), tc.steps)
			}
			if tc.steps == 0 && a != 1 {
				t.Fatalf("a = %v for T=0, want 1", a)
			}
			for j := range w {
				dual := a * w0[j]
				for s := range tc.steps {
					dual += beta[s] * clip[s] * grads[s][j]
				}
				if d := math.Abs(dual - w[j]); d > 1e-12 {
					t.Fatalf("entry %d: primal %v dual %v (diff %g)", j, w[j], dual, d)
				}
			}
		})
	}
}
