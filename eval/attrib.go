package eval

import (
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/spotlight-lm/spotlight/dualmem"
)

// OutMemory attributes the `out` layer's logits to training tokens exactly, from the dual form
// (SPEC §1): logit_c(x) = aW·(x·W_1[:,c]) + aB·b_1[c] + Σ_j s_j(x)·g_j[c] with
// s_j(x) = betaW_t c_t (k_j·x) + betaB_t c_t for training token j of step t.
//
// A token's contribution here is its whole effect on the logit, s_j(x)·g_j[c], the weight
// term (the paper's v_j·α_j) plus its bias-gradient term, because masking its loss removes
// both. Its attention is |α_j| = |k_j·x|.
type OutMemory struct {
	M         *dualmem.LayerMemory
	sW, sB    []float64 // per step index t-first
	aW, aB    float64
	first     int32
	din, dout int
}

// NewOutMemory prepares the `out` layer's memory (meta is the store's).
func NewOutMemory(m *dualmem.LayerMemory, meta dualmem.Meta) (*OutMemory, error) {
	if m.Tokens() == 0 {
		return nil, fmt.Errorf("eval: the memory holds no training tokens")
	}
	aW, aB, betaW, betaB := m.Coefficients(meta)
	o := &OutMemory{M: m, aW: aW, aB: aB, first: int32(m.Steps[0].Step), din: m.Spec.DIn, dout: m.Spec.DOut}
	o.sW, o.sB = make([]float64, len(m.Steps)), make([]float64, len(m.Steps))
	for k, si := range m.Steps {
		o.sW[k], o.sB[k] = betaW[k]*float64(si.Clip), betaB[k]*float64(si.Clip)
	}
	return o, nil
}

// Tokens is the number of training tokens in the memory.
func (o *OutMemory) Tokens() int { return o.M.Tokens() }

// Scan is one query read against the whole memory.
type Scan struct {
	X       []float32 // the out layer's input at the query
	Target  int32
	Alpha   []float64 // k_j·x per training token
	Coef    []float64 // s_j(x)
	Contrib []float64 // s_j(x)·g_j[target]
	Logit   float64   // the target's logit rebuilt from the memory (the dual)
}

// Scan computes α, s and the contributions to target's logit for every training token.
func (o *OutMemory) Scan(x []float32, target int32) *Scan {
	n := o.Tokens()
	s := &Scan{X: x, Target: target, Alpha: make([]float64, n), Coef: make([]float64, n), Contrib: make([]float64, n)}
	const workers = 2
	var wg sync.WaitGroup
	sums := make([]float64, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi := w*n/workers, (w+1)*n/workers
			var sum float64
			for j := lo; j < hi; j++ {
				var dot float64
				for i, kv := range o.M.Keys[j*o.din : (j+1)*o.din] {
					dot += float64(kv) * float64(x[i])
				}
				t := o.M.Step[j] - o.first
				c := o.sW[t]*dot + o.sB[t]
				s.Alpha[j], s.Coef[j] = dot, c
				s.Contrib[j] = c * float64(o.M.Grads[j*o.dout+int(target)])
				sum += s.Contrib[j]
			}
			sums[w] = sum
		}()
	}
	wg.Wait()
	var w0 float64
	for i, xv := range x {
		w0 += float64(xv) * float64(o.M.Initial.W[i*o.dout+int(target)])
	}
	s.Logit = o.aW*w0 + o.aB*float64(o.M.Initial.B[target])
	for _, v := range sums {
		s.Logit += v
	}
	return s
}

// Top returns the indices of the k training tokens ranked highest: by signed contribution
// (rankBy "contribution") or by |α| ("attention"), best first.
func (s *Scan) Top(k int, rankBy string) []int {
	score := s.Contrib
	if rankBy == "attention" {
		score = make([]float64, len(s.Alpha))
		for j, a := range s.Alpha {
			score[j] = math.Abs(a)
		}
	}
	return topK(score, k)
}

// topK returns the indices of the k largest values, largest first.
func topK(v []float64, k int) []int {
	k = min(k, len(v))
	best := make([]int, 0, k+1)
	for j, x := range v {
		if len(best) == k && x <= v[best[k-1]] {
			continue
		}
		i := sort.Search(len(best), func(i int) bool { return v[best[i]] < x })
		best = append(best, 0)
		copy(best[i+1:], best[i:])
		best[i] = j
		if len(best) > k {
			best = best[:k]
		}
	}
	return best
}

// Counterfactual is log p(target) with the given training tokens' whole contributions removed
// from every logit, minus log p(target) as the model gives it: the memory's prediction of what
// retraining without those tokens does to the token, to first order in the training
// trajectory (it holds every other token's gradient fixed).
func (o *OutMemory) Counterfactual(s *Scan, logits []float32, remove []int) float64 {
	orig := make([]float64, len(logits))
	for c, l := range logits {
		orig[c] = float64(l)
	}
	mod := append([]float64{}, orig...)
	for _, j := range remove {
		for c, g := range o.M.Grads[j*o.dout : (j+1)*o.dout] {
			mod[c] -= s.Coef[j] * float64(g)
		}
	}
	return logSoftmaxAt(mod, s.Target) - logSoftmaxAt(orig, s.Target)
}

// logSoftmaxAt is log softmax(logits)[target] in float64.
func logSoftmaxAt(logits []float64, target int32) float64 {
	hi := math.Inf(-1)
	for _, l := range logits {
		hi = math.Max(hi, l)
	}
	var sum float64
	for _, l := range logits {
		sum += math.Exp(l - hi)
	}
	return logits[target] - hi - math.Log(sum)
}

// logProb is log p(target) under float32 logits.
func logProb(logits []float32, target int32) float64 {
	l := make([]float64, len(logits))
	for c, v := range logits {
		l[c] = float64(v)
	}
	return logSoftmaxAt(l, target)
}
