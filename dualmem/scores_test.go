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
