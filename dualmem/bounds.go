package dualmem

import (
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Block bounds let Search skip keys that cannot enter a top-k. Each step's tokens are ordered
// by target (stable) and cut into blocks of at most boundsBlock tokens, never across steps,
// so a block has one step scale s_t. Ordering by target pays because tokens with one target
// have similar gradients (for `out`, g[v] is negative only where the target is v) and, near
// the output, similar keys. Targets smaller than a block share one.
//
// A box is a centre c and radius r per coordinate such that every key k of the block has
// |k_i − c_i| ≤ r_i exactly; gc, gr do the same for the gradients; nk ≥ ‖|c|+r‖₂ and
// ng ≥ ‖|gc|+gr‖₂; rk ≥ ‖k − c‖₂ for every key (a ball about the same centre) and rg the
// same for the gradients. Why the bounds hold: for a key k in the box and a query x, exactly
//
//	c·x − w ≤ k·x ≤ c·x + w, w = min(r·|x|, rk·‖x‖),
//
// (the box and Cauchy–Schwarz: the keys are spread, not clustered, so the ball is often the
// tighter of the two, and taking both costs one product)
// and a float32 dot product of d terms (any order, fused or not) is within
// γ_d·Σ|k_i x_i| ≤ γ_d·nk·‖x‖ of the real one (γ_d = d·u/(1−d·u), u = 2⁻²⁴). c·x and r·|x|
// are computed in float32 too, within the same error together, so the float32 α that Scan
// computes lies in [c·x − r·|x| − 2γ_d·nk·‖x‖, c·x + r·|x| + 2γ_d·nk·‖x‖] (boundSlack·γ_d
// is used). Likewise g·u with gc, gr, ng (for a one-hot u, [gc_v − gr_v, gc_v + gr_v],
// read exactly). So |α| ≤ max(|αlo|, |αhi|), and the contribution α·s_t·(g·u), computed in
// float64, is at most the largest product of the interval ends times s_t, plus a relative
// slack for the float64 rounding of those products.
//
// Three levels are searched best-first: a whole step's box, its blocks' boxes, then each
// token's int8 codes in its block's boxes (see stepRecord and searchRun.read), which bound
// its α to within r·|x|/254 and its g·u to within gr·|u|/254, plus rounding; only tokens
// still able to enter a top-k are read in float32.
const (
	boundsBlock = 64
	boundSlack  = 4     // times γ_d·nk·‖x‖: 2 is the proven error, the rest is margin
	relSlack    = 1e-12 // relative slack on float64 bound arithmetic (a few roundings of 1e-16)
)

// gamma is γ_d for float32 sums of d products.
func gamma(d int) float64 {
	u := float64(d) * 0x1p-24
	return u / (1 - u)
}

// stepBlocks orders the tokens of one step (its targets) by target, stably, and cuts them
// into blocks: perm gets the step-local token indices in block order, and the returned ends
// the end of each block in perm.
func stepBlocks(targets []int32, perm []int32, ends []int32) ([]int32, []int32) {
	n := len(targets)
	perm, ends = perm[:0], ends[:0]
	if n == 0 {
		return perm, ends
	}
	lo, hi := targets[0], targets[0]
	for _, t := range targets {
		lo, hi = min(lo, t), max(hi, t)
	}
	count := make([]int32, int(hi-lo)+2)
	for _, t := range targets {
		count[t-lo+1]++
	}
	for i := 1; i < len(count); i++ {
		count[i] += count[i-1]
	}
	perm = slices.Grow(perm, n)[:n]
	at := append([]int32(nil), count...)
	for i, t := range targets {
		perm[at[t-lo]] = int32(i)
		at[t-lo]++
	}
	cur := int32(0) // tokens in the open block
	for g := 0; g+1 < len(count); g++ {
		a, e := count[g], count[g+1]
		size := e - a
		switch {
		case size == 0:
		case size > boundsBlock: // split into near-equal blocks of this target alone
			if cur > 0 {
				ends, cur = append(ends, a), 0
			}
			k := (size + boundsBlock - 1) / boundsBlock
			for i := int32(1); i <= k; i++ {
				ends = append(ends, a+size*i/k)
			}
		case cur+size > boundsBlock:
			ends, cur = append(ends, a), size
		default:
			cur += size
		}
	}
	if cur > 0 {
		ends = append(ends, int32(n))
	}
	return perm, ends
}

// boxes is a view of n boxes laid out as C[n][din] R[n][din] GC[n][dout] GR[n][dout] NK[n]
// NG[n] RK[n] RG[n].
type boxes struct {
	n, din, dout                 int
	c, r, gc, gr, nk, ng, rk, rg []float32
	// Optionally gc and gr again by output, then box: [o·tstride + i], so that a one-hot
	// query reads its column in a row rather than one value per box's record.
	gcT, grT []float32
	tstride  int
}

func boxWords(n, din, dout int) int { return n * (2*din + 2*dout + 4) }

// sub is boxes [a, e) of b.
func (b boxes) sub(a, e int) boxes {
	s := boxes{n: e - a, din: b.din, dout: b.dout, c: b.c[a*b.din : e*b.din], r: b.r[a*b.din : e*b.din],
		gc: b.gc[a*b.dout : e*b.dout], gr: b.gr[a*b.dout : e*b.dout], nk: b.nk[a:e], ng: b.ng[a:e], rk: b.rk[a:e], rg: b.rg[a:e]}
	if b.gcT != nil {
		s.gcT, s.grT, s.tstride = b.gcT[a:], b.grT[a:], b.tstride
	}
	return s
}

// transpose fills b's gcT and grT.
func (b *boxes) transpose() {
	b.tstride = b.n
	b.gcT, b.grT = make([]float32, b.dout*b.n), make([]float32, b.dout*b.n)
	for i := range b.n {
		for o := range b.dout {
			b.gcT[o*b.n+i], b.grT[o*b.n+i] = b.gc[i*b.dout+o], b.gr[i*b.dout+o]
		}
	}
}

func viewBoxes(w []float32, n, din, dout int) boxes {
	b := boxes{n: n, din: din, dout: dout}
	b.c, w = w[:n*din], w[n*din:]
	b.r, w = w[:n*din], w[n*din:]
	b.gc, w = w[:n*dout], w[n*dout:]
	b.gr, w = w[:n*dout], w[n*dout:]
	b.nk, b.ng, b.rk, b.rg = w[:n], w[n:2*n], w[2*n:3*n], w[3*n:4*n]
	return b
}

// upF32 rounds a non-negative float64 up to float32.
func upF32(v float64) float32 {
	f := float32(v)
	if float64(f) < v {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// setBox writes box i of b from the per-coordinate minima and maxima (float32 values held
// in float64) and returns nothing; c is the rounded midpoint, r covers both ends.
func setBox(c, r []float32, lo, hi []float32) (norm float64) {
	for i := range lo {
		l, h := float64(lo[i]), float64(hi[i])
		ci := float32((l + h) / 2)
		ri := upF32(math.Max(h-float64(ci), float64(ci)-l) * (1 + 1e-15))
		c[i], r[i] = ci, ri
		v := math.Abs(float64(ci)) + float64(ri)
		norm += v * v
	}
	return math.Sqrt(norm) * (1 + 1e-9)
}

// recordWords is the size of a step's record: its boxes, then its key codes and its
// gradient codes.
func recordWords(nblk, tokens, din, dout int) int {
	return boxWords(nblk+1, din, dout) + (tokens*(din+dout)+3)/4
}

// stepRecord computes the record of one step: box 0 is the whole step, then one box per
// block of stepBlocks; then every token's key as int8 codes in its block's box, in block
// order: q_i = round(127·(k_i − c_i)/r_i), so k_i = c_i + r_i·q_i/127 + e_i with
// |e_i| ≤ r_i/254; then every token's gradient the same way in the block's gradient box
// (a token's own G interval is much tighter than its block's, where contributions are
// ranked). keys [n, din], grads [n, dout].
func stepRecord(keys, grads []float32, targets []int32, din, dout int) (rec []float32, nblk int) {
	perm, ends := stepBlocks(targets, make([]int32, len(targets)), nil)
	n := len(ends) + 1
	rec = make([]float32, recordWords(len(ends), len(targets), din, dout))
	codes := asI8(rec[boxWords(n, din, dout):])
	codes, gcodes := codes[:len(targets)*din], codes[len(targets)*din:]
	b := viewBoxes(rec, n, din, dout)
	klo, khi, glo, ghi := make([]float32, din), make([]float32, din), make([]float32, dout), make([]float32, dout)
	slo, shi, sglo, sghi := filled(din, inf), filled(din, -inf), filled(dout, inf), filled(dout, -inf)
	start := int32(0)
	for bi, end := range ends {
		for i := range klo {
			klo[i], khi[i] = inf, -inf
		}
		for i := range glo {
			glo[i], ghi[i] = inf, -inf
		}
		for _, j := range perm[start:end] {
			minMax(klo, khi, keys[int(j)*din:int(j+1)*din])
			minMax(glo, ghi, grads[int(j)*dout:int(j+1)*dout])
		}
		k := bi + 1
		b.nk[k] = upF32(setBox(b.c[k*din:(k+1)*din], b.r[k*din:(k+1)*din], klo, khi))
		c, r := b.c[k*din:(k+1)*din], b.r[k*din:(k+1)*din]
		encode(codes, keys, perm, start, end, c, r)
		b.ng[k] = upF32(setBox(b.gc[k*dout:(k+1)*dout], b.gr[k*dout:(k+1)*dout], glo, ghi))
		encode(gcodes, grads, perm, start, end, b.gc[k*dout:(k+1)*dout], b.gr[k*dout:(k+1)*dout])
		b.rk[k] = ballRadius(keys, perm[start:end], b.c[k*din:(k+1)*din])
		b.rg[k] = ballRadius(grads, perm[start:end], b.gc[k*dout:(k+1)*dout])
		unionBox(slo, shi, klo, khi)
		unionBox(sglo, sghi, glo, ghi)
		start = end
	}
	if len(ends) > 0 {
		b.nk[0] = upF32(setBox(b.c[:din], b.r[:din], slo, shi))
		b.ng[0] = upF32(setBox(b.gc[:dout], b.gr[:dout], sglo, sghi))
		b.rk[0] = ballRadius(keys, perm, b.c[:din])
		b.rg[0] = ballRadius(grads, perm, b.gc[:dout])
	}
	return rec, len(ends)
}

// ballRadius is an upper bound, in float32, of ‖v_j − c‖₂ over the rows j of vs (each of
// len(c) values) listed in rows. The differences, squares and sum in float64 are within a
// few d·2⁻⁵³ of the real ones, relatively: 1e-9 covers it.
func ballRadius(vs []float32, rows []int32, c []float32) float32 {
	d := len(c)
	var m float64
	for _, j := range rows {
		var s float64
		for i, v := range vs[int(j)*d : int(j+1)*d] {
			e := float64(v) - float64(c[i])
			s += e * e
		}
		m = math.Max(m, s)
	}
	return upF32(math.Sqrt(m) * (1 + 1e-9))
}

// encode writes the int8 codes of rows perm[start:end] of vs (len(c) values each) in the box
// c, r at positions start..end−1 of codes.
func encode(codes []int8, vs []float32, perm []int32, start, end int32, c, r []float32) {
	d := len(c)
	for p := start; p < end; p++ {
		code := codes[int(p)*d : int(p+1)*d]
		for i, v := range vs[int(perm[p])*d : int(perm[p]+1)*d] {
			if r[i] > 0 {
				code[i] = int8(max(-127, min(127, math.Round(127*(float64(v)-float64(c[i]))/float64(r[i])))))
			}
		}
	}
}

// minMax widens [lo, hi] per coordinate to hold v (NaNs never widen it).
func minMax(lo, hi, v []float32) {
	lo, hi = lo[:len(v)], hi[:len(v)]
	for i, x := range v {
		if x < lo[i] {
			lo[i] = x
		}
		if x > hi[i] {
			hi[i] = x
		}
	}
}

var inf = float32(math.Inf(1))

func unionBox(lo, hi, blo, bhi []float32) {
	for i := range lo {
		lo[i], hi[i] = min(lo[i], blo[i]), max(hi[i], bhi[i])
	}
}

func filled(n int, v float32) []float32 {
	xs := make([]float32, n)
	for i := range xs {
		xs[i] = v
	}
	return xs
}

// blockBounds holds every step's boxes (a stepRecord per step), on the heap or mapped.
type blockBounds struct {
	din, dout int
	words     []float32
	off       []int64 // per step: where its record starts in words
	nblk      []int32 // per step: blocks (its record has nblk+1 boxes)
}

// codes is step t's key codes (tokens of the step, in block order).
func (bb *blockBounds) codes(t, tokens int) []int8 {
	w := bb.words[bb.off[t]+int64(boxWords(int(bb.nblk[t])+1, bb.din, bb.dout)):]
	return asI8(w)[:tokens*bb.din]
}

// gcodes is step t's gradient codes (tokens of the step, in block order).
func (bb *blockBounds) gcodes(t, tokens int) []int8 {
	w := bb.words[bb.off[t]+int64(boxWords(int(bb.nblk[t])+1, bb.din, bb.dout)):]
	return asI8(w)[tokens*bb.din : tokens*(bb.din+bb.dout)]
}

func asI8(w []float32) []int8 {
	if len(w) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(&w[0])), 4*len(w))
}

func (bb *blockBounds) step(t int) boxes {
	n := int(bb.nblk[t]) + 1
	return viewBoxes(bb.words[bb.off[t]:][:boxWords(n, bb.din, bb.dout)], n, bb.din, bb.dout)
}

// computeBounds builds the bounds of a memory on the heap, over all cores.
func computeBounds(m *LayerMemory) *blockBounds {
	din, dout := m.Spec.DIn, m.Spec.DOut
	T := len(m.Steps)
	recs, nblk := make([][]float32, T), make([]int32, T)
	start := make([]int, T+1)
	for k, si := range m.Steps {
		start[k+1] = start[k] + si.Tokens()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := int(next.Add(1) - 1); t < T; t = int(next.Add(1) - 1) {
				a, e := start[t], start[t+1]
				var nb int
				recs[t], nb = stepRecord(m.Keys[a*din:e*din], m.Grads[a*dout:e*dout], m.Targets[a:e], din, dout)
				nblk[t] = int32(nb)
			}
		}()
	}
	wg.Wait()
	bb := &blockBounds{din: din, dout: dout, off: make([]int64, T), nblk: nblk}
	total := 0
	for _, r := range recs {
		total += len(r)
	}
	bb.words = make([]float32, 0, total)
	for t, r := range recs {
		bb.off[t] = int64(len(bb.words))
		bb.words = append(bb.words, r...)
	}
	return bb
}

// ubs sets, for boxes b (box i of step scale sws[i], or sw for all when sws is nil) and the
// queries sel of sq, the upper bounds att[l*n+i] of |α| and con[l*n+i] of the contribution
// of query sel[l] (see the comment at the top). Scratch buffers come from w.
func (sq *searchQueries) ubs(b boxes, sws []float64, sw float64, sel []int, att, con []float64, w *scratch) {
	n, L, din, dout := b.n, len(sel), b.din, b.dout
	xs, axs := w.f32(&w.gx, L*din), w.f32(&w.gax, L*din)
	hs := w.hs[:0] // per selected query: its row of us, or −1
	for l, qi := range sel {
		copy(xs[l*din:(l+1)*din], sq.xs[qi*din:])
		copy(axs[l*din:(l+1)*din], sq.axs[qi*din:])
		if sq.hq[qi] >= 0 {
			hs = append(hs, len(hs))
		} else {
			hs = append(hs, -1)
		}
	}
	w.hs = hs
	cx, rx := w.f32(&w.cx, n*L), w.f32(&w.rx, n*L)
	dotBlockAVX(b.c, n, din, xs, L, cx)
	dotBlockAVX(b.r, n, din, axs, L, rx)
	var gcu, gru []float32
	if nh := slices.Max(hs) + 1; nh > 0 {
		us, aus := w.f32(&w.gus, nh*dout), w.f32(&w.gaus, nh*dout)
		for l, qi := range sel {
			if h := hs[l]; h >= 0 {
				copy(us[h*dout:(h+1)*dout], sq.us[sq.hq[qi]*dout:])
				copy(aus[h*dout:(h+1)*dout], sq.aus[sq.hq[qi]*dout:])
			}
		}
		gcu, gru = w.f32(&w.gcu, n*nh), w.f32(&w.gru, n*nh)
		dotBlockAVX(b.gc, n, dout, us, nh, gcu)
		dotBlockAVX(b.gr, n, dout, aus, nh, gru)
	}
	ga, gg := boundSlack*gamma(din), boundSlack*gamma(dout)
	for l, qi := range sel {
		q := sq.qs[qi]
		var gcol, rcol []float32 // a one-hot query's gradient box column, when b has it by output
		if q.Token >= 0 && b.gcT != nil {
			gcol, rcol = b.gcT[q.Token*b.tstride:][:n], b.grT[q.Token*b.tstride:][:n]
		}
		for i := range n {
			c := float64(cx[l*n+i])
			r := min(float64(rx[l*n+i]), float64(b.rk[i])*sq.xn[qi]) + ga*float64(b.nk[i])*sq.xn[qi]
			e := relSlack * (math.Abs(c) + r)
			alo, ahi := c-r-e, c+r+e
			att[l*n+i] = max(math.Abs(alo), math.Abs(ahi))
			var gc, gr float64
			switch {
			case gcol != nil:
				gc, gr = float64(gcol[i]), float64(rcol[i])
			case q.Token >= 0:
				gc, gr = float64(b.gc[i*dout+q.Token]), float64(b.gr[i*dout+q.Token])
			default:
				h := hs[l]
				gc = float64(gcu[h*n+i])
				gr = min(float64(gru[h*n+i]), float64(b.rg[i])*sq.un[qi]) + gg*float64(b.ng[i])*sq.un[qi]
			}
			e = relSlack * (math.Abs(gc) + gr)
			glo, ghi := gc-gr-e, gc+gr+e
			s := sw
			if sws != nil {
				s = sws[i]
			}
			p0, p1, p2, p3 := alo*s*glo, alo*s*ghi, ahi*s*glo, ahi*s*ghi
			// The builtin max, like math.Max, is NaN when any product is.
			best := max(p0, p1, p2, p3)
			big := max(0, math.Abs(p0), math.Abs(p1), math.Abs(p2), math.Abs(p3))
			con[l*n+i] = best + 4*relSlack*big
		}
	}
}

// scratch is one worker's reusable buffers.
type scratch struct {
	cx, rx, gcu, gru, alpha, gu, kb, gb, y, xsel, usel []float32
	gx, gax, gus, gaus                                 []float32 // ubs's selected queries
	gcb, yg, gat                                       []float32 // gradient codes
	att, con                                           []float64
	keep                                               []bool
	toks                                               []int32 // token, position in its step
	surv                                               []int32
	live                                               []liveQuery
	bsel                                               []selBox
	sel, esel, hs                                      []int
	pushes                                             []push  // a round's nodes to queue
	founds                                             []found // a round's hits
	reads                                              ScanStats
}

func (w *scratch) f64(p *[]float64, n int) []float64 {
	if cap(*p) < n {
		*p = make([]float64, n)
	}
	*p = (*p)[:n]
	return *p
}

func (w *scratch) f32(p *[]float32, n int) []float32 {
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return *p
}

// widenI8Go is widenI8 in Go (the fallback, and the tail the kernel leaves).
func widenI8Go(dst []float32, src []int8) {
	dst = dst[:len(src)]
	for i, q := range src {
		dst[i] = float32(q)
	}
}

func mulF32Go(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}

// outsideGo is outside for at most 64 values.
func outsideGo(v []float32, lo, hi float32) uint64 {
	var m uint64
	for i, x := range v {
		if !(x > lo && x < hi) {
			m |= 1 << i
		}
	}
	return m
}
