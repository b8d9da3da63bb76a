package dualmem

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// ErrNoAggregates: the layer's memory has no per-step aggregates (a read-only directory
// whose aggregate files are missing or stale, or a memory loaded onto the heap).
var ErrNoAggregates = errors.New("no per-step aggregates")

// Sums is what the per-step aggregates give for one query over a token range, exactly and
// without a pass over the keys: the same figures as Scan's W0Term, BiasTerm, Σ contribution,
// StepAlpha and StepContribution, to float64 rounding (a scan's α are float32).
type Sums struct {
	W0Term, BiasTerm float64
	Contribution     float64   // Σ contribution of the range's tokens
	StepAlpha        []float64 // per step index: Σ α of its tokens in range
	StepContribution []float64 // per step index: Σ contribution of its tokens in range
	Read             ScanStats // keys and gradients read: those of partly covered steps only
}

// Total is W0Term + BiasTerm + Contribution: the dual reconstruction of y·u.
func (r *Sums) Total() float64 { return r.W0Term + r.BiasTerm + r.Contribution }

// HasAggregates reports whether Sums can answer, and if not, why.
func (s *Scanner) HasAggregates() error {
	if s.Mem.agg != nil {
		return nil
	}
	if s.Mem.aggErr != nil {
		return fmt.Errorf("dualmem: layer %q: %w: %v", s.Mem.Spec.Name, ErrNoAggregates, s.Mem.aggErr)
	}
	return fmt.Errorf("dualmem: layer %q: %w (memory not read from segment files)", s.Mem.Spec.Name, ErrNoAggregates)
}

// Sums is SumsAll for one query.
func (s *Scanner) Sums(q Query, from, to int) (Sums, error) {
	r, err := s.SumsAll(context.Background(), []Query{q}, from, to)
	if err != nil {
		return Sums{}, err
	}
	return r[0], nil
}

// SumsAll computes Sums for every query over memory tokens [from, to) (to 0 means N), as
// ScanOptions' From and To. Whole steps come from their aggregates, Σα = K_t·x and
// Σ contribution = s_t·uᵀG_t x, read once for all queries; the tokens of a step the range
// covers only in part are scored from their keys. A corrupt step's aggregates are an error
// naming the layer and the step.
func (s *Scanner) SumsAll(ctx context.Context, qs []Query, from, to int) ([]Sums, error) {
	if err := s.HasAggregates(); err != nil {
		return nil, err
	}
	if to == 0 {
		to = s.N
	}
	if from < 0 || from > to || to > s.N {
		return nil, fmt.Errorf("dualmem: sums %q: token range [%d, %d) outside [0, %d)", s.Mem.Spec.Name, from, to, s.N)
	}
	for i, q := range qs {
		if err := s.checkQuery("sums", i, q); err != nil {
			return nil, err
		}
	}
	T := len(s.Mem.Steps)
	out := make([]Sums, len(qs))
	for i := range out {
		out[i] = Sums{StepAlpha: make([]float64, T), StepContribution: make([]float64, T), Read: s.NoneRead()}
		out[i].W0Term, out[i].BiasTerm = s.terms(qs[i])
	}
	var whole []int
	start := 0
	for k, si := range s.Mem.Steps {
		end := start + si.Tokens()
		lo, hi := max(from, start), min(to, end)
		switch {
		case lo >= hi:
		case lo == start && hi == end:
			whole = append(whole, k)
		default:
			for i, q := range qs {
				out[i].partial(s, q, k, lo, hi)
			}
		}
		start = end
	}
	if err := s.sumSteps(ctx, qs, whole, out); err != nil {
		return nil, err
	}
	for i := range out {
		for _, c := range out[i].StepContribution {
			out[i].Contribution += c
		}
	}
	return out, nil
}

// partial adds the tokens [lo, hi) of step index k, scored from their keys.
func (r *Sums) partial(s *Scanner, q Query, k, lo, hi int) {
	for j := lo; j < hi; j++ {
		a, c := s.Score(q, j)
		r.StepAlpha[k] += a
		r.StepContribution[k] += c
	}
	r.Read = r.Read.Plus(ScanStats{BytesRead: int64(hi-lo) * s.tokenBytes(), BlocksRead: 1})
}

// sumSteps fills the per-step sums of the listed steps from their aggregates, split over
// the cores; the queries with a projection U share one product G_t·X per step.
func (s *Scanner) sumSteps(ctx context.Context, qs []Query, steps []int, out []Sums) error {
	din, dout := s.DIn, s.DOut
	xs := make([][]float64, len(qs))
	var hx, hu []float64 // the hidden queries' x [nh, DIn] and u [nh, DOut]
	hq := make([]int, len(qs))
	for i, q := range qs {
		xs[i] = make([]float64, din)
		for c, v := range q.X {
			xs[i][c] = float64(v)
		}
		hq[i] = -1
		if q.Token < 0 {
			hq[i] = len(hx) / din
			hx = append(hx, xs[i]...)
			for _, u := range q.U {
				hu = append(hu, float64(u))
			}
		}
	}
	nh := len(hx) / din
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		mu.Lock()
		first = cmpOr(first, err)
		mu.Unlock()
		next.Store(int64(len(steps))) // the others stop at their next step
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(steps), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			y := make([]float64, dout*nh)
			for {
				n := int(next.Add(1) - 1)
				if n >= len(steps) {
					return
				}
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				k := steps[n]
				g, ks, _, err := s.Mem.agg.step(k, s.Mem.Steps[k].Tokens())
				if err != nil {
					fail(err)
					return
				}
				if nh > 0 {
					blas64.Gemm(blas.NoTrans, blas.Trans, 1,
						blas64.General{Rows: dout, Cols: din, Stride: din, Data: g},
						blas64.General{Rows: nh, Cols: din, Stride: din, Data: hx},
						0, blas64.General{Rows: dout, Cols: nh, Stride: nh, Data: y})
				}
				for i, q := range qs {
					var c float64
					if q.Token >= 0 {
						c = dot64(g[q.Token*din:(q.Token+1)*din], xs[i])
					} else {
						for o := range dout {
							c += hu[hq[i]*dout+o] * y[o*nh+hq[i]]
						}
					}
					out[i].StepAlpha[k] = dot64(ks, xs[i])
					out[i].StepContribution[k] = s.SW[k] * c
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func dot64(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}
