package dualmem

import (
	"unsafe"
)

// Scores sets alpha[i] and contribution[i] to Score(q, idx[i]) for every listed token: the
// evidence of an answer scores hundreds of thousands of scattered tokens, so this is Score
// with float32 products summed in dot32's four chains (the scan's own α are float32 too),
// eight tokens at a time.
//
// When the scan's kernels run in SIMD for the layer's widths (simdScores), the products are
// theirs instead, so a listed token's scores are the scan's own α and contribution.
func (s *Scanner) Scores(q Query, idx []int32, alpha, contribution []float64) {
	if s.simdScores(q) {
		s.scoresSIMD(q, idx, alpha, contribution)
		return
	}
	din, dout := s.DIn, s.DOut
	keys, grads := s.Mem.Keys, s.Mem.Grads
	i := 0
	if din >= 4 && (q.Token >= 0 || dout >= 4) {
		var kp, gp [8]*float32
		var ka, ga [32]float32
		for ; i+8 <= len(idx); i += 8 {
			j := idx[i : i+8 : i+8]
			for r, jr := range j {
				kp[r], gp[r] = &keys[int(jr)*din:][:din][0], &grads[int(jr)*dout:][:dout][0]
			}
			dotLanes8(&kp, &q.X[0], din&^3, &ka)
			if q.Token < 0 {
				dotLanes8(&gp, &q.U[0], dout&^3, &ga)
			}
			for r, jr := range j {
				k, g := keys[int(jr)*din:][:din], grads[int(jr)*dout:][:dout]
				a := float64(finishDot(ka[4*r:4*r+4], k, q.X))
				var proj float64
				if q.Token >= 0 {
					proj = float64(g[q.Token])
				} else {
					proj = float64(finishDot(ga[4*r:4*r+4], g, q.U))
				}
				alpha[i+r], contribution[i+r] = a, a*s.SW[s.StepIndex(int(jr))]*proj
			}
		}
	}
	for ; i < len(idx); i++ {
		j := int(idx[i])
		a := float64(dot32(keys[j*din:(j+1)*din], q.X))
		g := grads[j*dout : (j+1)*dout]
		var proj float64
		if q.Token >= 0 {
			proj = float64(g[q.Token])
		} else {
			proj = float64(dot32(g, q.U))
		}
		alpha[i], contribution[i] = a, a*s.SW[s.StepIndex(j)]*proj
	}
}

// simdScores reports whether Scores computes q's α and projection with the scan's SIMD
// kernels (the keys' width, and for a projection vector the gradients', are multiples of 8
// on a CPU with AVX2): the scan then reads its listed tokens' scores from its own block.
func (s *Scanner) simdScores(q Query) bool {
	return simdDims(s.DIn) && (q.Token >= 0 || simdDims(s.DOut))
}

// scoresSIMD is Scores with the scan's kernel, eight listed tokens per call (a short last
// group repeats its first token and drops the extra results).
func (s *Scanner) scoresSIMD(q Query, idx []int32, alpha, contribution []float64) {
	din, dout := s.DIn, s.DOut
	keys, grads := s.Mem.Keys, s.Mem.Grads
	var kp, gp [8]*float32
	var ka, ga [8]float32
	for i := 0; i < len(idx); i += 8 {
		j := idx[i:min(i+8, len(idx))]
		for r := range kp {
			jr := int(j[0])
			if r < len(j) {
				jr = int(j[r])
			}
			kp[r], gp[r] = &keys[jr*din:][:din][0], &grads[jr*dout:][:dout][0]
		}
		dotRows8(&kp, &q.X[0], din, &ka)
		if q.Token < 0 {
			dotRows8(&gp, &q.U[0], dout, &ga)
		}
		for r, jr := range j {
			a := float64(ka[r])
			proj := float64(ga[r])
			if q.Token >= 0 {
				proj = float64(grads[int(jr)*dout+q.Token])
			}
			alpha[i+r], contribution[i+r] = a, a*s.SW[s.StepIndex(int(jr))]*proj
		}
	}
}

// finishDot completes dot32(a, b) from the first len(a)&^3 values' four chains: the last
// len(a)%4 products go into the first chain, as in dot32.
func finishDot(lanes []float32, a, b []float32) float32 {
	s0, s1, s2, s3 := lanes[0], lanes[1], lanes[2], lanes[3]
	for i := len(a) &^ 3; i < len(a); i++ {
		s0 += float32(a[i] * b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dot32 is a·b over len(a) values in four float32 chains. The explicit conversions keep
// every product rounded on its own (no fused multiply-add), as dotLanes4 does.
func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += float32(a[i] * b[i])
		s1 += float32(a[i+1] * b[i+1])
		s2 += float32(a[i+2] * b[i+2])
		s3 += float32(a[i+3] * b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += float32(a[i] * b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dotLanes8Go is dotLanes8 in Go: the four chains of dot32 over the first n values (a
// multiple of 4) of rows k[0..7] against x.
func dotLanes8Go(k *[8]*float32, x *float32, n int, out *[32]float32) {
	xs := unsafe.Slice(x, n)
	for r, kr := range k {
		ks := unsafe.Slice(kr, n)
		var s [4]float32
		for i := 0; i < n; i += 4 {
			for l := range 4 {
				s[l] += float32(ks[i+l] * xs[i+l])
			}
		}
		copy(out[4*r:4*r+4], s[:])
	}
}
