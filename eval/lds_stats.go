package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// ldsScore is the mean over queries of the Spearman correlation across subsets between
// predicted and real Δloss, with the 2.5% and 97.5% percentiles of that mean over bootstrap
// resamples of the queries. Queries whose correlation is undefined (no spread) are left out.
func ldsScore(pred, real []float64, M, Q, B int, seed uint64) (mean, lo, hi float64) {
	var per []float64
	p, r := make([]float64, M), make([]float64, M)
	for q := range Q {
		for m := range M {
			p[m], r[m] = pred[m*Q+q], real[m*Q+q]
		}
		if s := Spearman(p, r); !math.IsNaN(s) {
			per = append(per, s)
		}
	}
	if len(per) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	lo, hi = bootstrapCI(per, B, seed)
	return meanOf(per), lo, hi
}

func meanOf(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// bootstrapCI is the 95% percentile interval of the mean of x over B resamples.
func bootstrapCI(x []float64, B int, seed uint64) (lo, hi float64) {
	rng := rand.New(rand.NewPCG(seed, 0xb007))
	means := make([]float64, B)
	for b := range means {
		var s float64
		for range x {
			s += x[rng.IntN(len(x))]
		}
		means[b] = s / float64(len(x))
	}
	sort.Float64s(means)
	return means[int(0.025*float64(B))], means[min(B-1, int(0.975*float64(B)))]
}

// Table renders the report for people.
func (r *LDSReport) Table() string {
	var b []byte
	f := func(format string, a ...any) { b = fmt.Appendf(b, format, a...) }
	c := r.Config
	f("LDS: %d subsets each dropping %.3g of the training %ss (loss-masked), %d held-out queries", r.Subsets, r.Drop, r.Unit, r.Queries)
	if r.CrossSeed {
		f(", retrained under seed %d (predictions from seed %d)", c.Seed+1, c.Seed)
	}
	f("\nmodel: d=%d blocks=%d ctx=%d batch=%d steps=%d lr=%g momentum=%g; held-out loss %.4f (whole split %.4f); train %.0fs, retrains %.0fs\n",
		c.D, c.Blocks, c.Ctx, c.Batch, c.Steps, c.LR, c.Momentum, float64(r.HeldOutLoss), float64(r.SplitLoss), r.TrainSeconds, r.RetrainSeconds)
	f("noise floor: std of the real Δloss across subsets %.4g nats (mean |Δloss| %.4g, query loss %.3f); rerun with nothing dropped: max |Δloss| %.3g\n",
		float64(r.NoiseFloor), float64(r.MeanAbsDLoss), float64(r.QueryLoss), float64(r.ReproduceMaxAbsDLoss))
	if !math.IsNaN(float64(r.SingleDLoss)) {
		n := r.Drop * float64(r.Config.Steps*r.Config.Batch*r.Config.Ctx)
		f("chaos probe: dropping ONE random %s moves the query loss by %.4g nats RMS, %.2f of the noise floor (a linear response would give %.3f)\n",
			r.Unit, float64(r.SingleDLoss), float64(r.SingleDLoss)/float64(r.NoiseFloor), 1/math.Sqrt(n))
	}
	f("\n")
	f("%-36s %-28s %7s  %-17s %8s\n", "method", "layers", "LDS", "95% CI", "seconds")
	for _, m := range r.Methods {
		f("%-36s %-28s %7.3f  [%6.3f, %6.3f] %8.1f\n", m.Name, m.Layers, float64(m.LDS), float64(m.CI[0]), float64(m.CI[1]), m.Seconds)
	}
	return string(b)
}
