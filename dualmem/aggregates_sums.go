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
	StepAlpha        []float64 // per step index (SumsSpans: per span): Σ α of its tokens in range
	StepContribution []float64 // per step index (SumsSpans: per span): Σ contribution of its tokens in range
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
	return s.sums(ctx, qs, from, to, nil)
}

// SumsSpans is SumsAll with the per-step sums added up over spans of steps: span i is the
// step indices [cuts[i], cuts[i+1]), cuts ascending from 0 to the step count, and StepAlpha
// and StepContribution hold one sum per span. A span's whole steps take the scanner's chunk
// sums (chunks.go) where a chunk fits, so a few wide spans, such as a timeline's bins, read
// a small part of the per-step aggregates: the same sums in another order.
func (s *Scanner) SumsSpans(ctx context.Context, qs []Query, from, to int, cuts []int) ([]Sums, error) {
	T := len(s.Mem.Steps)
	if len(cuts) == 0 || cuts[0] != 0 || cuts[len(cuts)-1] != T {
		return nil, fmt.Errorf("dualmem: sums %q: spans must cut steps 0 to %d, got %v", s.Mem.Spec.Name, T, cuts)
	}
	for i := 1; i < len(cuts); i++ {
		if cuts[i] < cuts[i-1] {
			return nil, fmt.Errorf("dualmem: sums %q: span cuts %v not ascending", s.Mem.Spec.Name, cuts)
		}
	}
	return s.sums(ctx, qs, from, to, cuts)
}

// sumJob is one per-step record (step index i) or, with chunk, one chunk sum (chunk i).
type sumJob struct {
	i     int
	chunk bool
}

// sums is SumsAll (cuts nil: a span per step) and SumsSpans.
func (s *Scanner) sums(ctx context.Context, qs []Query, from, to int, cuts []int) ([]Sums, error) {
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
	spans, cs := T, (*chunkSums)(nil)
	if cuts != nil {
		spans = len(cuts) - 1
		if cs = s.chunks(); cs.err != nil {
			cs = nil // the per-step records then name the step at fault
		}
	}
	out := make([]Sums, len(qs))
	for i := range out {
		out[i] = Sums{StepAlpha: make([]float64, spans), StepContribution: make([]float64, spans), Read: s.NoneRead()}
		out[i].W0Term, out[i].BiasTerm = s.terms(qs[i])
	}
	starts := make([]int, T+1)
	for k, si := range s.Mem.Steps {
		starts[k+1] = starts[k] + si.Tokens()
	}
	jobs := make([][]sumJob, spans)
	for k, sp := 0, 0; k < T; {
		if cuts != nil {
			for k >= cuts[sp+1] {
				sp++
			}
		} else {
			sp = k
		}
		lo, hi := max(from, starts[k]), min(to, starts[k+1])
		switch {
		case lo >= hi:
			k++
		case lo > starts[k] || hi < starts[k+1]:
			for i, q := range qs {
				out[i].partial(s, q, k, sp, lo, hi)
			}
			k++
		case cs != nil && k%cs.n == 0 && k/cs.n < cs.count && k+cs.n <= cuts[sp+1] && starts[k+cs.n] <= to:
			jobs[sp] = append(jobs[sp], sumJob{i: k / cs.n, chunk: true})
			k += cs.n
		default:
			jobs[sp] = append(jobs[sp], sumJob{i: k})
			k++
		}
	}
	if err := s.sumJobs(ctx, qs, jobs, cs, out); err != nil {
		return nil, err
	}
	for i := range out {
		for _, c := range out[i].StepContribution {
			out[i].Contribution += c
		}
	}
	return out, nil
}

// partial adds the tokens [lo, hi) of step index k, scored from their keys, to span sp.
func (r *Sums) partial(s *Scanner, q Query, k, sp, lo, hi int) {
	for j := lo; j < hi; j++ {
		a, c := s.Score(q, j)
		r.StepAlpha[sp] += a
		r.StepContribution[sp] += c
	}
	r.Read = r.Read.Plus(ScanStats{BytesRead: int64(hi-lo) * s.tokenBytes(), BlocksRead: 1})
}

// sumJobs adds every span's jobs (jobs[sp], in order) to the spans' sums, a span at a time
// on each core; the queries with a projection U share one product G·X per record.
func (s *Scanner) sumJobs(ctx context.Context, qs []Query, jobs [][]sumJob, cs *chunkSums, out []Sums) error {
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
		next.Store(int64(len(jobs))) // the others stop at their next span
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(jobs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			y := make([]float64, dout*nh)
			sa, sc := make([]float64, len(qs)), make([]float64, len(qs))
			for {
				sp := int(next.Add(1) - 1)
				if sp >= len(jobs) {
					return
				}
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				clear(sa)
				clear(sc)
				for _, jb := range jobs[sp] {
					g, ks, f := []float64(nil), []float64(nil), 1.0
					if jb.chunk {
						g, ks = cs.at(jb.i)
					} else {
						var err error
						if g, ks, _, err = s.Mem.agg.step(jb.i, s.Mem.Steps[jb.i].Tokens()); err != nil {
							fail(err)
							return
						}
						f = s.SW[jb.i]
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
						sa[i] += dot64(ks, xs[i])
						sc[i] += f * c
					}
				}
				for i := range qs {
					out[i].StepAlpha[sp] += sa[i]
					out[i].StepContribution[sp] += sc[i]
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

// dot64 is a·b (len(b) ≥ len(a)) in four running sums, which the CPU adds in parallel:
// sumSteps takes two per query and step, the bulk of a pruned request's totals.
func dot64(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
