package dualmem

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// Scanner is one layer's memory prepared for fast queries: the dual-form coefficients per
// step, the per-step gradient sums (bias term) and an index from corpus offset to tokens.
// It only reads the memory and is safe for concurrent use.
//
// With s_t = betaW_t·c_t, the attention weight of training token j (of step t) for query x
// is α_j = k_j·x, its value v_j = s_t·g_j, and for a projection vector u (the one-hot of the
// generated token for `out`, ∂logit/∂y for hidden layers) its contribution is α_j·(v_j·u).
// Then, exactly (up to float32 rounding of α):
//
//	y·u = W0Term + BiasTerm + Σ_j contribution_j
//	W0Term   = aW·(x·W_1)·u
//	BiasTerm = aB·b_1·u + Σ_t betaB_t·c_t·(Σ_i g_{t,i})·u
type Scanner struct {
	Mem          *LayerMemory
	N, DIn, DOut int
	DualForm               // AW, AB; SW, SB per step index (step-1): betaW·c and betaB·c
	GSum         []float64 // [steps, DOut] Σ_i g_{t,i}
	first        int32

	byOffset *offsetIndex // corpus offset → tokens trained on it (every epoch)

	dualOnce sync.Once
	wDual    []float64 // [DIn, DOut] the final weights rebuilt from memory
	bDual    []float64 // [DOut]

	searchOnce sync.Once
	sidx       *searchIndex // Search's block layout and bounds (search.go)

	biasOnce sync.Once
	biasTok  []float64 // [DOut] the bias term of each one-hot query (tokenBias)

	chunkOnce  sync.Once
	csums      *chunkSums // SumsSpans' sums over runs of steps (chunks.go)
	chunkSteps int        // steps per chunk sum: sumChunkSteps, or a test's
}

// NewScanner prepares mem (read-only from now on) for queries under meta's optimizer.
func NewScanner(mem *LayerMemory, meta Meta) *Scanner { return NewScannerFrom(nil, mem, meta) }

// NewScannerFrom is NewScanner for a memory that extends prev's by later steps (the next
// checkpoint of a live run): the per-step gradient sums of prev's steps are kept, and only
// the dual-form coefficients, which depend on the final step, are computed for all steps.
// A nil or unrelated prev is ignored.
func NewScannerFrom(prev *Scanner, mem *LayerMemory, meta Meta) *Scanner {
	s := &Scanner{Mem: mem, N: mem.Tokens(), DIn: mem.Spec.DIn, DOut: mem.Spec.DOut, first: 1,
		DualForm: NewDualForm(mem.Steps, meta.Optimizer)}
	T := len(mem.Steps)
	if T > 0 {
		s.first = int32(mem.Steps[0].Step)
	}
	s.GSum = mem.arena.Float64s(T * s.DOut)
	from := 0
	if prev.extendedBy(mem) {
		from = prev.N
		copy(s.GSum, prev.GSum)
	}
	from = s.gradSumsFromAggregates(from)
	for j := from; j < s.N; j++ {
		row := s.GSum[int(mem.Step[j]-s.first)*s.DOut:][:s.DOut]
		for o, g := range mem.Grads[j*s.DOut : (j+1)*s.DOut] {
			row[o] += float64(g)
		}
	}
	if s.byOffset = mem.index; s.byOffset == nil {
		s.byOffset = newOffsetIndex(mem.Offsets, mem.arena)
	}
	return s
}

// gradSumsFromAggregates fills GSum's rows of the steps from token `from` on (a step
// boundary) from the aggregates, without reading a gradient, and returns the first token it
// could not: N when every step was there, else the start of the first step missing or
// failing its checksum, from which the token loop goes on.
func (s *Scanner) gradSumsFromAggregates(from int) int {
	if s.Mem.agg == nil {
		return from
	}
	start := 0
	for k, si := range s.Mem.Steps {
		n := si.Tokens()
		if start >= from {
			_, _, gs, err := s.Mem.agg.step(k, n)
			if err != nil {
				return start
			}
			copy(s.GSum[k*s.DOut:(k+1)*s.DOut], gs)
		}
		start += n
	}
	return start
}

// extendedBy reports whether mem holds s's memory followed by later steps.
func (s *Scanner) extendedBy(mem *LayerMemory) bool {
	if s == nil || s.Mem.Spec != mem.Spec || len(s.Mem.Steps) > len(mem.Steps) || s.N > mem.Tokens() {
		return false
	}
	for k, si := range s.Mem.Steps {
		if mem.Steps[k] != si {
			return false
		}
	}
	return true
}

// StepIndex is token j's step minus the first step (an index into SW, SB, Steps).
func (s *Scanner) StepIndex(j int) int { return int(s.Mem.Step[j] - s.first) }

// Query is one query vector x (len DIn) with its projection: the one-hot of Token when
// Token ≥ 0, else U (len DOut).
type Query struct {
	X     []float32
	U     []float32
	Token int
}

func (q Query) proj(g []float32) float64 {
	if q.Token >= 0 {
		return float64(g[q.Token])
	}
	var s float64
	for o, u := range q.U {
		s += float64(g[o]) * float64(u)
	}
	return s
}

// Hit is one training token found by a scan.
type Hit struct {
	Index        int     // token index in the memory
	Alpha        float64 // k·x
	Contribution float64 // α·(v·u)
}

// Result is what a scan found for one query.
type Result struct {
	TopAttention    []Hit // by |α|, largest first
	TopContribution []Hit // by signed contribution, largest (most positive) first
	W0Term          float64
	BiasTerm        float64
	Positive        float64 // Σ of positive contributions
	Negative        float64 // Σ of negative contributions
	AbsTotal        float64 // Σ |contribution|
	// Per step index: Σα, Σ|α|, Σcontribution.
	StepAlpha, StepAbsAlpha, StepContribution []float64
	// Per group of ScanOptions.Groups: Σα and Σcontribution (nil without groups).
	GroupAlpha, GroupContribution []float64
	// Per class of the query's ScanOptions.Members (nil without them).
	Classes []Class
}

// Total is W0Term + BiasTerm + Σ contributions: the dual reconstruction of y·u.
func (r *Result) Total() float64 { return r.W0Term + r.BiasTerm + r.Positive + r.Negative }

// ScanOptions tunes Scan.
type ScanOptions struct {
	TopK    int    // per query and ranking, at least 1 (the caller's request decides it)
	Workers int    // goroutines (default GOMAXPROCS)
	Block   int    // keys per block (default 1024)
	Kernel  Kernel // block kernel (default KernelAuto)

	// From and To limit the scan to memory tokens [From, To) (To 0 means N), so a caller can
	// ask about one range of training steps; totals and top-k are then over that range.
	From, To int
	// Groups, if not nil, puts each memory token in a group in [0, NGroups), or none (−1);
	// Result.GroupAlpha and GroupContribution then hold each group's sums.
	Groups  []int32
	NGroups int
	// Members, if not nil, lists per query memory tokens (inside [From, To)) in classes,
	// scored exactly as Scores does while their keys are in cache from the scan; each
	// class's sums and best TopK tokens are in Result.Classes. A caller that needs figures
	// over many scattered tokens then reads the memory once, in order.
	Members []Members
}

// Scan computes α = k·x for every stored key and all queries in one pass over the keys,
// split over the cores, and returns per query the top-k by attention and by contribution,
// the totals and the per-step sums. Sums are accumulated in float64.
func (s *Scanner) Scan(ctx context.Context, qs []Query, opt ScanOptions) ([]Result, error) {
	if opt.TopK < 1 {
		return nil, fmt.Errorf("dualmem: scan %q: top-k %d, want at least 1", s.Mem.Spec.Name, opt.TopK)
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Block <= 0 {
		opt.Block = 1024
	}
	Q := len(qs)
	if Q == 0 {
		return nil, nil
	}
	if opt.To == 0 {
		opt.To = s.N
	}
	if opt.From < 0 || opt.From > opt.To || opt.To > s.N {
		return nil, fmt.Errorf("dualmem: scan %q: token range [%d, %d) outside [0, %d)", s.Mem.Spec.Name, opt.From, opt.To, s.N)
	}
	if opt.Groups != nil && len(opt.Groups) != s.N {
		return nil, fmt.Errorf("dualmem: scan %q: %d group ids for %d tokens", s.Mem.Spec.Name, len(opt.Groups), s.N)
	}
	if err := s.checkMembers(qs, opt); err != nil {
		return nil, err
	}
	xs := make([]float32, Q*s.DIn)
	for i, q := range qs {
		if err := s.checkQuery("scan", i, q); err != nil {
			return nil, err
		}
		copy(xs[i*s.DIn:], q.X)
	}
	kern := opt.Kernel.fn(Q)
	// Every query's projections v·u of a block's gradients go in one row of a [Q, nb]
	// matrix: the hidden-layer queries' first (one more kernel pass, over the gradients, for
	// all of them at once), then the one-hot queries' (their gradient columns, gathered row by
	// row, in memory order).
	row, us, toks := make([]int, Q), []float32{}, []int{}
	for i, q := range qs {
		if q.Token < 0 {
			row[i] = len(us) / s.DOut
			us = append(us, q.U...)
		}
	}
	nh := len(us) / s.DOut
	for i, q := range qs {
		if q.Token >= 0 {
			row[i] = nh + len(toks)
			toks = append(toks, q.Token)
		}
	}
	kernU := opt.Kernel.fn(nh)
	// The members' scores are read from the block when the kernels compute them as Scores
	// does; else Scores scores them while their keys are in cache.
	fromBlock := opt.Kernel == KernelAuto || opt.Kernel == KernelSIMD
	for _, q := range qs {
		fromBlock = fromBlock && s.simdScores(q)
	}
	T := len(s.SW)
	nBlocks := (opt.To - opt.From + opt.Block - 1) / opt.Block
	workers := min(opt.Workers, max(nBlocks, 1))
	parts := make([]*partial, workers)
	res := make([]Result, Q)
	var totals *memberTotals
	heaps := make([][]classHeaps, workers)
	if opt.Members != nil {
		totals = newMemberTotals(opt.Members)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		p := newPartial(Q, T, opt.TopK)
		if opt.Groups != nil {
			p.groups, p.ga, p.gc = opt.Groups, make([]float64, Q*opt.NGroups), make([]float64, Q*opt.NGroups)
		}
		parts[w] = p
		if opt.Members != nil {
			heaps[w] = make([]classHeaps, Q)
			for qi := range Q {
				heaps[w][qi] = newClassHeaps(opt.Members[qi].N, opt.TopK)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			alpha, proj := make([]float32, opt.Block*Q), make([]float32, opt.Block*Q)
			for {
				if ctx.Err() != nil {
					return
				}
				bi := int(next.Add(1) - 1)
				if bi >= nBlocks {
					return
				}
				j0 := opt.From + bi*opt.Block
				nb := min(opt.Block, opt.To-j0)
				kern(s.Mem.Keys[j0*s.DIn:], nb, s.DIn, xs, Q, alpha)
				if nh > 0 {
					kernU(s.Mem.Grads[j0*s.DOut:], nb, s.DOut, us, nh, proj)
				}
				if len(toks) > 0 {
					gatherColumns(s.Mem.Grads[j0*s.DOut:(j0+nb)*s.DOut], s.DOut, toks, proj[nh*nb:(nh+len(toks))*nb])
				}
				s.accumulate(p, j0, nb, alpha, proj, row)
				if opt.Members != nil {
					b := totals.block(Q)
					s.foldMembers(b, heaps[w], qs, opt.Members, j0, nb, alpha, proj, row, fromBlock)
					totals.done(bi, b)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for qi := range res {
		r := &res[qi]
		r.StepAlpha, r.StepAbsAlpha, r.StepContribution = make([]float64, T), make([]float64, T), make([]float64, T)
		att, con := &hitHeap{abs: true}, &hitHeap{}
		for _, p := range parts {
			r.Positive += p.pos[qi]
			r.Negative += p.neg[qi]
			r.AbsTotal += p.abs[qi]
			for t := range T {
				r.StepAlpha[t] += p.sa[qi*T+t]
				r.StepAbsAlpha[t] += p.saa[qi*T+t]
				r.StepContribution[t] += p.sc[qi*T+t]
			}
			for _, h := range p.att[qi].h {
				att.offer(h, opt.TopK)
			}
			for _, h := range p.con[qi].h {
				con.offer(h, opt.TopK)
			}
		}
		if G := opt.NGroups; opt.Groups != nil {
			r.GroupAlpha, r.GroupContribution = make([]float64, G), make([]float64, G)
			for _, p := range parts {
				for g := range G {
					r.GroupAlpha[g] += p.ga[g*Q+qi]
					r.GroupContribution[g] += p.gc[g*Q+qi]
				}
			}
		}
		r.TopAttention, r.TopContribution = att.sorted(), con.sorted()
		r.W0Term, r.BiasTerm = s.terms(qs[qi])
		if opt.Members != nil {
			hs := make([]classHeaps, workers)
			for w := range workers {
				hs[w] = heaps[w][qi]
			}
			r.Classes = totals.classes(qi, hs, opt.TopK)
		}
	}
	return res, nil
}

// gatherColumns sets out[k*nb+b] to row b's column cols[k] of the nb rows of m (d values
// each). It reads the rows in order, a few dozen at a time for all columns, so each row is
// fetched from memory once and each column is written in order.
func gatherColumns(m []float32, d int, cols []int, out []float32) {
	const chunk = 32
	nb := len(m) / d
	for lo := 0; lo < nb; lo += chunk {
		hi := min(lo+chunk, nb)
		rows := m[lo*d : hi*d]
		for k, c := range cols {
			o := out[k*nb+lo : k*nb+hi]
			for b := range o {
				o[b] = rows[b*d+c]
			}
		}
	}
}

// accumulate folds a block's α into a worker's partial results. The block is cut into runs
// of one training step (and, with groups, of one group: a batch row's tokens mostly share a
// passage), once for all queries, so each run's sums stay in registers; alpha is
// query-major ([Q, nb]), and so is proj, the projections v·u of the gradients (query qi's
// in row[qi]). The positive/negative split is branch-free (pos = (Σc+Σ|c|)/2).
func (s *Scanner) accumulate(p *partial, j0, nb int, alpha, proj []float32, row []int) {
	T, Q := len(s.SW), len(row)
	p.cutRuns(s, j0, nb)
	for qi, r := range row {
		att, con := p.att[qi], p.con[qi]
		var sum, abs float64
		al := alpha[qi*nb : (qi+1)*nb]
		gu := proj[r*nb : (r+1)*nb]
		lo := 0
		for _, rn := range p.runs {
			hi, t := int(rn.hi), int(rn.t)
			sw := s.SW[t]
			// Two interleaved chains of sums halve the add-latency bound.
			var sa0, saa0, sc0, ab0, sa1, saa1, sc1, ab1 float64
			attMin, conMin := att.min, con.min // -Inf until the heaps are full
			b := lo
			for ; b+2 <= hi; b += 2 {
				a0, a1 := float64(al[b]), float64(al[b+1])
				c0, c1 := a0*sw*float64(gu[b]), a1*sw*float64(gu[b+1])
				aa0, aa1 := math.Abs(a0), math.Abs(a1)
				sa0 += a0
				sa1 += a1
				saa0 += aa0
				saa1 += aa1
				sc0 += c0
				sc1 += c1
				ab0 += math.Abs(c0)
				ab1 += math.Abs(c1)
				if aa0 > attMin || aa1 > attMin || c0 > conMin || c1 > conMin {
					for k, a, aa, c := 0, a0, aa0, c0; k < 2; k, a, aa, c = k+1, a1, aa1, c1 {
						if aa > attMin {
							att.offer(Hit{Index: j0 + b + k, Alpha: a, Contribution: c}, att.k)
							attMin = att.min
						}
						if c > conMin {
							con.offer(Hit{Index: j0 + b + k, Alpha: a, Contribution: c}, con.k)
							conMin = con.min
						}
					}
				}
			}
			for ; b < hi; b++ {
				a := float64(al[b])
				c := a * sw * float64(gu[b])
				aa := math.Abs(a)
				sa0 += a
				saa0 += aa
				sc0 += c
				ab0 += math.Abs(c)
				if aa > attMin {
					att.offer(Hit{Index: j0 + b, Alpha: a, Contribution: c}, att.k)
					attMin = att.min
				}
				if c > conMin {
					con.offer(Hit{Index: j0 + b, Alpha: a, Contribution: c}, con.k)
					conMin = con.min
				}
			}
			p.sa[qi*T+t] += sa0 + sa1
			p.saa[qi*T+t] += saa0 + saa1
			p.sc[qi*T+t] += sc0 + sc1
			if rn.g >= 0 {
				// [group, query]: a block's few groups stay in cache for all queries.
				p.ga[int(rn.g)*Q+qi] += sa0 + sa1
				p.gc[int(rn.g)*Q+qi] += sc0 + sc1
			}
			sum += sc0 + sc1
			abs += ab0 + ab1
			lo = hi
		}
		p.pos[qi] += (sum + abs) / 2
		p.neg[qi] += (sum - abs) / 2
		p.abs[qi] += abs
	}
}

// run is the end (in its block), step index and group (−1: none, or no groups) of a run of
// tokens that accumulate sums together.
type run struct{ hi, t, g int32 }

// cutRuns cuts block [j0, j0+nb) into runs of one step and, with groups, one group.
func (p *partial) cutRuns(s *Scanner, j0, nb int) {
	steps := s.Mem.Step[j0 : j0+nb]
	var groups []int32
	if p.groups != nil {
		groups = p.groups[j0 : j0+nb]
	}
	p.runs = p.runs[:0]
	for lo := 0; lo < nb; {
		st, g := steps[lo], int32(-1)
		hi := lo + 1
		if groups == nil {
			for hi < nb && steps[hi] == st {
				hi++
			}
		} else {
			g = groups[lo]
			for hi < nb && steps[hi] == st && groups[hi] == g {
				hi++
			}
		}
		p.runs = append(p.runs, run{hi: int32(hi), t: st - s.first, g: g})
		lo = hi
	}
}

// terms returns the W_0 term and the bias term of query q.
func (s *Scanner) terms(q Query) (w0, bias float64) {
	dout := s.DOut
	W1, b1 := s.Mem.Initial.W, s.Mem.Initial.B
	for i, x := range q.X {
		w0 += float64(x) * q.proj(W1[i*dout:(i+1)*dout])
	}
	w0 *= s.AW
	if q.Token >= 0 {
		return w0, s.tokenBias()[q.Token]
	}
	bias = s.AB * q.proj(b1)
	for t, sb := range s.SB {
		if sb == 0 {
			continue
		}
		var d float64
		for o, u := range q.U {
			d += s.GSum[t*dout+o] * float64(u)
		}
		bias += sb * d
	}
	return w0, bias
}

// tokenBias is the bias term of every one-hot query, by token, built on first use: per token
// the same sum, in the same order, as terms makes for a projection, which would otherwise
// take a pass over every step's gradient sums per query.
func (s *Scanner) tokenBias() []float64 {
	s.biasOnce.Do(func() {
		dout := s.DOut
		b := make([]float64, dout)
		for o := range b {
			b[o] = s.AB * float64(s.Mem.Initial.B[o])
		}
		for t, sb := range s.SB {
			if sb == 0 {
				continue
			}
			for o, g := range s.GSum[t*dout : (t+1)*dout] {
				b[o] += sb * g
			}
		}
		s.biasTok = b
	})
	return s.biasTok
}

// Score recomputes token j's α and contribution for query q in float64.
func (s *Scanner) Score(q Query, j int) (alpha, contribution float64) {
	for i, k := range s.Mem.randomKeys()[j*s.DIn : (j+1)*s.DIn] {
		alpha += float64(k) * float64(q.X[i])
	}
	return alpha, alpha * s.SW[s.StepIndex(j)] * q.proj(s.Mem.randomGrads()[j*s.DOut:(j+1)*s.DOut])
}

// SameOffset lists the tokens trained on corpus offset off (one per epoch that saw it).
func (s *Scanner) SameOffset(off int64) []int32 { return s.byOffset.of(off) }

// Dual returns the layer's output for x rebuilt from the memory, x·W_dual + b_dual, where
// W_dual = aW·W_1 + Σ_t s_t Σ_i k_{t,i}ᵀ g_{t,i} (built once, on first use or by Warm;
// in float64 with gonum's blas64.Gemm).
func (s *Scanner) Dual(x []float32) []float64 {
	s.dualOnce.Do(s.buildDual)
	y := make([]float64, s.DOut)
	copy(y, s.bDual)
	for i, xv := range x {
		row := s.wDual[i*s.DOut : (i+1)*s.DOut]
		for o, w := range row {
			y[o] += float64(xv) * w
		}
	}
	return y
}

func (s *Scanner) buildDual() {
	din, dout := s.DIn, s.DOut
	s.wDual = make([]float64, din*dout)
	s.bDual = make([]float64, dout)
	for o := range dout {
		s.bDual[o] = s.AB * float64(s.Mem.Initial.B[o])
		for t, sb := range s.SB {
			s.bDual[o] += sb * s.GSum[t*dout+o]
		}
	}
	for i := range s.wDual {
		s.wDual[i] = s.AW * float64(s.Mem.Initial.W[i])
	}
	if s.dualFromAggregates() {
		return
	}
	// Σ_j s_t k_jᵀ g_j in blocks of tokens with gonum's blas64.Gemm, in float64.
	const blk = 2048
	workers := runtime.GOMAXPROCS(0)
	sums := make([][]float64, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc := make([]float64, din*dout)
			sg := make([]float64, blk*dout)
			kb := make([]float64, blk*din)
			for {
				j0 := int(next.Add(1)-1) * blk
				if j0 >= s.N {
					break
				}
				nb := min(blk, s.N-j0)
				for b := range nb {
					f := s.SW[s.StepIndex(j0+b)]
					for o, g := range s.Mem.Grads[(j0+b)*dout : (j0+b+1)*dout] {
						sg[b*dout+o] = f * float64(g)
					}
				}
				for i, k := range s.Mem.Keys[j0*din : (j0+nb)*din] {
					kb[i] = float64(k)
				}
				blas64.Gemm(blas.Trans, blas.NoTrans, 1,
					blas64.General{Rows: nb, Cols: din, Stride: din, Data: kb[:nb*din]},
					blas64.General{Rows: nb, Cols: dout, Stride: dout, Data: sg[:nb*dout]},
					1, blas64.General{Rows: din, Cols: dout, Stride: dout, Data: acc})
			}
			sums[w] = acc
		}()
	}
	wg.Wait()
	for _, acc := range sums {
		for i, v := range acc {
			s.wDual[i] += v
		}
	}
}

// dualFromAggregates adds Σ_t s_t·G_tᵀ to wDual from the per-step aggregates, reading no
// key: the same sum as the token loop, in another order. It reports false, with wDual
// untouched, when a step's aggregates are missing or fail their checksum.
func (s *Scanner) dualFromAggregates() bool {
	if s.HasAggregates() != nil {
		return false
	}
	din, dout := s.DIn, s.DOut
	acc := make([]float64, din*dout)
	for k, si := range s.Mem.Steps {
		g, _, _, err := s.Mem.agg.step(k, si.Tokens())
		if err != nil {
			return false
		}
		f := s.SW[k]
		for o := range dout {
			row := g[o*din : (o+1)*din]
			for i, v := range row {
				acc[i*dout+o] += f * v
			}
		}
	}
	for i, v := range acc {
		s.wDual[i] += v
	}
	return true
}

// checkQuery checks query i's widths against the layer's, for the error of op (scan,
// search, sums).
func (s *Scanner) checkQuery(op string, i int, q Query) error {
	name := s.Mem.Spec.Name
	if len(q.X) != s.DIn {
		return fmt.Errorf("dualmem: %s %q: query %d has %d values, want %d", op, name, i, len(q.X), s.DIn)
	}
	if q.Token < 0 && len(q.U) != s.DOut {
		return fmt.Errorf("dualmem: %s %q: projection %d has %d values, want %d", op, name, i, len(q.U), s.DOut)
	}
	if q.Token >= s.DOut {
		return fmt.Errorf("dualmem: %s %q: token %d out of range", op, name, q.Token)
	}
	return nil
}

// Warm builds what Dual needs now rather than on first use.
func (s *Scanner) Warm() { s.dualOnce.Do(s.buildDual) }

// partial is one worker's running results.
type partial struct {
	att, con      []*hitHeap
	pos, neg, abs []float64
	sa, saa, sc   []float64 // [Q, T]
	groups        []int32   // ScanOptions.Groups, or nil
	ga, gc        []float64 // [NGroups, Q]
	runs          []run     // the block's runs (cutRuns)
}

func newPartial(Q, T, k int) *partial {
	p := &partial{att: make([]*hitHeap, Q), con: make([]*hitHeap, Q),
		pos: make([]float64, Q), neg: make([]float64, Q), abs: make([]float64, Q),
		sa: make([]float64, Q*T), saa: make([]float64, Q*T), sc: make([]float64, Q*T)}
	for i := range Q {
		p.att[i] = &hitHeap{abs: true, k: k, min: math.Inf(-1)}
		p.con[i] = &hitHeap{k: k, min: math.Inf(-1)}
	}
	return p
}

// hitHeap keeps the k best hits (by |α| when abs, else by contribution) as a min-heap;
// min is the k-th best score once full.
type hitHeap struct {
	h   []Hit
	abs bool
	k   int
	min float64
}

func (h *hitHeap) score(x Hit) float64 {
	if h.abs {
		return math.Abs(x.Alpha)
	}
	return x.Contribution
}

// better orders ties by index so results are deterministic.
func (h *hitHeap) better(a, b Hit) bool {
	sa, sb := h.score(a), h.score(b)
	if sa != sb {
		return sa > sb
	}
	return a.Index < b.Index
}

// offer keeps x if it is among the k best so far. The heap is kept by hand (the worst
// hit at the root), as container/heap would, without its interface calls.
func (h *hitHeap) offer(x Hit, k int) {
	switch {
	case len(h.h) < k:
		h.h = append(h.h, x)
		h.up(len(h.h) - 1)
	case h.better(x, h.h[0]):
		h.h[0] = x
		h.down(0)
	default:
		return
	}
	if len(h.h) == k {
		h.min = h.score(h.h[0])
	}
}

// up moves hit j towards the root while it is worse than its parent.
func (h *hitHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.better(h.h[i], h.h[j]) {
			break
		}
		h.h[i], h.h[j] = h.h[j], h.h[i]
		j = i
	}
}

// down moves hit i away from the root while a child is worse.
func (h *hitHeap) down(i int) {
	n := len(h.h)
	for {
		j := 2*i + 1
		if j >= n {
			return
		}
		if j2 := j + 1; j2 < n && h.better(h.h[j], h.h[j2]) {
			j = j2
		}
		if !h.better(h.h[i], h.h[j]) {
			return
		}
		h.h[i], h.h[j] = h.h[j], h.h[i]
		i = j
	}
}

func (h *hitHeap) sorted() []Hit {
	out := append([]Hit(nil), h.h...)
	sort.Slice(out, func(i, j int) bool { return h.better(out[i], out[j]) })
	return out
}
