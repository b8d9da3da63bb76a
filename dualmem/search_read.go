package dualmem

import (
	"math"
	"math/bits"
	"slices"
)

// A block's tokens fit one 64-bit mask (outside).
const _ = uint(64 - boundsBlock)

// The token level of Search: a block's codes bound each token's α and contribution, and
// the survivors are read in float32 as Scan reads them.

// read bounds the α and G of block b's tokens in range from their int8 key and gradient
// codes and refines those whose bound can still enter a queue's top-k. Each query first bounds the whole block at
// the current thresholds (the box and the ball, see bounds.go); only the queries it can
// still serve read the codes, since the codes cost as many products per query as the keys.
// With y = r⊙x, the code gives α̃ = c·x + (q·y)/127, and the float32 α that Scan computes is
// within E = r·|x|·(1/254 + 2γ_d) + boundSlack·γ_d·nk·‖x‖ of it (the code's rounding, the
// float32 sum of q·y, and α's own rounding); c·x and r·|x| are taken in float32, within the
// rest of boundSlack.
func (r *searchRun) read(b int32, thr []float64, out []found, st *ScanStats, w *scratch) []found {
	s, sq, ix := r.s, r.sq, r.ix
	din, dout := s.DIn, s.DOut
	t := int(ix.bstep[b])
	p0 := ix.bstart[ix.sblk[t]]
	bx, k := ix.bb.step(t), int(b-ix.sblk[t])+1
	rr := bx.r[k*din : (k+1)*din]
	toks := w.toks[:0]
	inside := t > r.t0 && t < r.t1-1 // a step inside the range: every token in it
	for p := ix.bstart[b]; p < ix.bstart[b+1]; p++ {
		if j := ix.perm[p]; inside || int(j) >= r.from && int(j) < r.to {
			toks = append(toks, j, p-p0)
		}
	}
	w.toks = toks
	nb := len(toks) / 2
	if nb == 0 {
		return out
	}
	g, ga, gg := gamma(din), boundSlack*gamma(din), boundSlack*gamma(dout)
	sw := s.SW[t]
	// Only queries whose expand-time bound reached their k-th best then, and still does,
	// can be served: thresholds only rise. Their block products come from expand.
	sel := w.bsel[:0]
	for c := r.head[b]; c != 0; c = r.cands[c].next {
		if cd := &r.cands[c]; cd.ub >= thr[cd.qr] && (len(sel) == 0 || sel[len(sel)-1].qi != int(cd.qr/2)) {
			sel = append(sel, selBox{int(cd.qr / 2), cd.box})
		}
	}
	slices.SortFunc(sel, func(a, b selBox) int { return a.qi - b.qi })
	sel = slices.CompactFunc(sel, func(a, b selBox) bool { return a.qi == b.qi })
	w.bsel = sel
	if len(sel) == 0 {
		return out
	}
	live := w.live[:0]
	for _, sb := range sel {
		qi := sb.qi
		q := sq.qs[qi]
		ta, tc := thr[2*qi], thr[2*qi+1]
		cx, rx := float64(sb.box.cx), float64(sb.box.rx)
		e := rx*(1.0/254*(1+1e-6)+2*g) + ga*float64(bx.nk[k])*sq.xn[qi]
		gc, gr := float64(sb.box.gc), float64(sb.box.gr)
		gr0 := gr // gr·|u| alone
		if q.Token < 0 {
			gr = math.Min(gr, float64(bx.rg[k])*sq.un[qi]) + gg*float64(bx.ng[k])*sq.un[qi]
		}
		ge := relSlack * (math.Abs(gc) + gr)
		// G = s_t·(g·u) lies in [glo, ghi]; α·G is largest at an end of α's interval, times
		// ghi where α ≥ 0 and glo where α < 0.
		glo, ghi := sw*(gc-gr-ge), sw*(gc+gr+ge)
		if glo > ghi {
			glo, ghi = ghi, glo
		}
		gm := max(-glo, ghi)
		// The whole block first: its α interval is c·x ± min(r·|x|, rk·‖x‖), widened by e.
		bw := math.Min(rx, float64(bx.rk[k])*sq.xn[qi]) + e + relSlack*(math.Abs(cx)+rx+e)
		if math.Abs(cx)+bw < ta && conUB(cx-bw, cx+bw, glo, ghi, gm) < tc {
			continue
		}
		// A token's contribution bound is at most (|α̃|+E)·gm·(1+8·relSlack), so one whose
		// |α̃|+E is below lim enters neither list; only the others take the full test.
		lim := ta
		switch {
		case gm > 0:
			lim = math.Min(lim, tc/(gm*(1+8*relSlack)))
		case tc <= 0: // a zero contribution can still enter
			lim = math.Inf(-1)
		}
		lq := liveQuery{qi: qi, cx: cx, e: e, glo: glo, ghi: ghi, gm: gm, gc: gc, gr: gr0, hrow: -1}
		// A token's gradient code gives its g·u to within eg: the code's rounding, and for a
		// projection the float32 sums, as for α (code·(gr⊙u), gc·u, and g·u's own).
		lq.eg = gr0*(1.0/254*(1+1e-6)) + relSlack*(math.Abs(gc)+gr0)
		if q.Token < 0 {
			lq.eg += gr0*2*gamma(dout) + gg*float64(bx.ng[k])*sq.un[qi]
		}
		lq.vlo, lq.vhi = pruneRange(cx, e, lim)
		live = append(live, lq)
	}
	w.live = live
	if len(live) == 0 {
		return out
	}
	st.BlocksRead++
	st.BytesRead += int64(nb * din)
	codes := ix.bb.codes(t, ix.tstart[t+1]-ix.tstart[t])
	np := (nb + 3) &^ 3
	cb := w.f32(&w.kb, np*din)
	clear(cb[nb*din:])
	if p := int(toks[1]); int(toks[2*nb-1]) == p+nb-1 { // the block's tokens, in a row
		widenI8(cb, codes[p*din:(p+nb)*din])
	} else {
		for i := range nb {
			widenI8(cb[i*din:], codes[int(toks[2*i+1])*din:][:din])
		}
	}
	L := len(live)
	y := w.f32(&w.y, L*din)
	for li, lq := range live {
		mulF32(y[li*din:(li+1)*din], rr, sq.xs[lq.qi*din:(lq.qi+1)*din])
	}
	at := w.f32(&w.alpha, np*L)
	dotBlockAVX(cb, np, din, y, L, at)
	gat := r.gradCodes(t, bx.gr[k*dout:(k+1)*dout], toks, live, thr, st, w)
	keep := w.keep[:0]
	for range nb {
		keep = append(keep, false)
	}
	gcodes := ix.bb.gcodes(t, ix.tstart[t+1]-ix.tstart[t])
	qsel := w.sel[:0]
	for li, lq := range live {
		ta, tc := thr[2*lq.qi], thr[2*lq.qi+1]
		tok := sq.qs[lq.qi].Token
		kept := false
		row := at[li*np : li*np+nb]
		for m := outside(row, lq.vlo, lq.vhi); m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			a := lq.cx + float64(row[i])/127
			ae := lq.e + relSlack*(math.Abs(a)+lq.e)
			if math.Abs(a)+ae >= ta {
				keep[i], kept = true, true
				continue
			}
			glo, ghi, gm := lq.glo, lq.ghi, lq.gm
			if !math.IsInf(tc, 1) { // the token's own G interval from its gradient code
				var gu float64
				if tok >= 0 {
					gu = lq.gc + lq.gr*float64(gcodes[int(toks[2*i+1])*dout+tok])/127
				} else {
					gu = lq.gc + float64(gat[lq.hrow*np+i])/127
				}
				l, h := sw*(gu-lq.eg), sw*(gu+lq.eg)
				if l > h {
					l, h = h, l
				}
				sl := relSlack * (math.Abs(l) + math.Abs(h))
				if l, h = max(glo, l-sl), min(ghi, h+sl); l <= h {
					glo, ghi, gm = l, h, max(-l, h)
				}
			}
			if conUB(a-ae, a+ae, glo, ghi, gm) >= tc {
				keep[i], kept = true, true
			}
		}
		if kept {
			qsel = append(qsel, lq.qi)
		}
	}
	w.keep, w.sel = keep, qsel
	surv := w.surv[:0]
	for i := range nb {
		if keep[i] {
			surv = append(surv, toks[2*i])
		}
	}
	w.surv = surv
	if len(surv) == 0 {
		return out
	}
	st.BytesRead += int64(len(surv)) * r.rowBytes
	return r.refine(surv, qsel, thr, out, w)
}

// selBox is a query that a block's read can serve, with the block's products for it.
type selBox struct {
	qi  int
	box blockBox
}

// liveQuery is a query that block bounds could not rule out, with what its token test
// needs: a token whose q·y lies in (vlo, vhi) enters neither of its lists.
type liveQuery struct {
	qi                  int
	cx, e, glo, ghi, gm float64
	vlo, vhi            float32
	// For the token's own G: g·u ≈ gc + (code·(gr⊙u))/127 within eg (for a token query,
	// gc + gr·code/127); hrow is the query's row in gradCodes' products, or −1.
	gc, gr, eg float64
	hrow       int
}

// gradCodes returns the products of block tokens toks' (token, position pairs) gradient
// codes with gr⊙u (gr the block's gradient radii) for the live projection queries that rank
// by contribution, [hrow·np + i], setting their hrow; nil when there are none. It counts
// what was read of the codes: a token's whole row for a projection, else a byte per token
// query (at most the row).
func (r *searchRun) gradCodes(t int, gr []float32, toks []int32, live []liveQuery, thr []float64, st *ScanStats, w *scratch) []float32 {
	ix, sq := r.ix, r.sq
	dout := r.s.DOut
	nb := len(toks) / 2
	np := (nb + 3) &^ 3
	H, tq := 0, 0
	for li := range live {
		qi := live[li].qi
		if math.IsInf(thr[2*qi+1], 1) {
			continue
		}
		if sq.qs[qi].Token >= 0 {
			tq++
			continue
		}
		live[li].hrow = H
		H++
	}
	if H > 0 {
		tq = dout
	}
	st.BytesRead += int64(nb * min(tq, dout))
	if H == 0 {
		return nil
	}
	gcodes := ix.bb.gcodes(t, ix.tstart[t+1]-ix.tstart[t])
	gb := w.f32(&w.gcb, np*dout)
	clear(gb[nb*dout:])
	if p := int(toks[1]); int(toks[2*nb-1]) == p+nb-1 {
		widenI8(gb, gcodes[p*dout:(p+nb)*dout])
	} else {
		for i := range nb {
			widenI8(gb[i*dout:], gcodes[int(toks[2*i+1])*dout:][:dout])
		}
	}
	yg := w.f32(&w.yg, H*dout)
	for _, lq := range live {
		if lq.hrow >= 0 {
			u := sq.qs[lq.qi].U
			for o, g := range gr {
				yg[lq.hrow*dout+o] = g * u[o]
			}
		}
	}
	gat := w.f32(&w.gat, np*H)
	dotBlockAVX(gb, np, dout, yg, H, gat)
	return gat
}

// pruneRange is the range (vlo, vhi) of v = q·y for which α̃ = cx + v/127 has |α̃| + E
// below lim, with E = e + relSlack·(|α̃| + e) as in read: |α̃| < m for
// m = (lim − e·(1+relSlack))/(1+relSlack). It is narrowed by 1e-9 of its scale for the
// float64 roundings, and its ends rounded inwards to float32; empty when m ≤ 0.
func pruneRange(cx, e, lim float64) (vlo, vhi float32) {
	none := [2]float32{float32(math.Inf(1)), float32(math.Inf(-1))}
	m := (lim - e*(1+relSlack)) / (1 + relSlack)
	if !(m > 0) || math.IsInf(m, 0) {
		return none[0], none[1]
	}
	d := 1e-9 * (math.Abs(cx) + m)
	lo, hi := 127*(-m-cx+d), 127*(m-cx-d)
	if !(lo < hi) {
		return none[0], none[1]
	}
	vlo, vhi = float32(lo), float32(hi)
	if float64(vlo) < lo {
		vlo = math.Nextafter32(vlo, float32(math.Inf(1)))
	}
	if float64(vhi) > hi {
		vhi = math.Nextafter32(vhi, float32(math.Inf(-1)))
	}
	return vlo, vhi
}

// conUB bounds α·G over α in [alo, ahi] and G in [glo, ghi] (gm = max |G|).
func conUB(alo, ahi, glo, ghi, gm float64) float64 {
	f := func(a float64) float64 {
		if a >= 0 {
			return a * ghi
		}
		return a * glo
	}
	u, v := f(alo), f(ahi)
	if v > u {
		u = v
	}
	return u + 4*relSlack*(abs(alo)+abs(ahi))*gm
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// refine computes the exact α and contribution of tokens toks (of one step) for queries
// sel, as Scan does, and returns the hits that beat a queue's k-th best.
func (r *searchRun) refine(toks []int32, sel []int, thr []float64, out []found, w *scratch) []found {
	s, sq := r.s, r.sq
	din, dout := s.DIn, s.DOut
	nb, L := len(toks), len(sel)
	// Zero rows pad the block to a multiple of 4 keys, so every key takes the kernel's
	// 4-key path, as in Scan, and gets the same float32 α.
	np := (nb + 3) &^ 3
	kb := w.f32(&w.kb, np*din)
	clear(kb[nb*din:])
	keys, grads := s.Mem.randomKeys(), s.Mem.randomGrads()
	if s.Mem.rKeys != nil { // one read of the span, not a fault per key, when it is on disk
		lo, hi := slices.Min(toks), slices.Max(toks)+1
		willNeed(keys[int(lo)*din : int(hi)*din])
		willNeed(grads[int(lo)*dout : int(hi)*dout])
	}
	for i, j := range toks {
		copy(kb[i*din:(i+1)*din], keys[int(j)*din:])
	}
	xs := w.f32(&w.xsel, L*din)
	var us []float32
	nh := 0
	for li, qi := range sel {
		copy(xs[li*din:(li+1)*din], sq.xs[qi*din:])
		if h := sq.hq[qi]; h >= 0 {
			us = append(w.usel[:nh*dout], sq.us[h*dout:(h+1)*dout]...)
			w.usel = us
			nh++
		}
	}
	alpha := w.f32(&w.alpha, np*L)
	dotBlockAVX(kb, np, din, xs, L, alpha)
	var gus []float32
	if nh > 0 {
		gb := w.f32(&w.gb, np*dout)
		clear(gb[nb*dout:])
		for i, j := range toks {
			copy(gb[i*dout:(i+1)*dout], grads[int(j)*dout:])
		}
		gus = w.f32(&w.gu, np*nh)
		dotBlockAVX(gb, np, dout, us, nh, gus)
	}
	sw := s.SW[s.StepIndex(int(toks[0]))]
	h := 0
	for li, qi := range sel {
		q := sq.qs[qi]
		ta, tc := thr[2*qi], thr[2*qi+1]
		hu := -1
		if q.Token < 0 {
			hu, h = h, h+1
		}
		for i, j := range toks {
			a := float64(alpha[li*np+i])
			var gu float64
			if hu < 0 {
				gu = float64(grads[int(j)*dout+q.Token])
			} else {
				gu = float64(gus[hu*np+i])
			}
			c := a * sw * gu
			if math.Abs(a) > ta {
				out = append(out, found{2 * qi, Hit{Index: int(j), Alpha: a, Contribution: c}})
			}
			if c > tc {
				out = append(out, found{2*qi + 1, Hit{Index: int(j), Alpha: a, Contribution: c}})
			}
		}
	}
	return out
}
