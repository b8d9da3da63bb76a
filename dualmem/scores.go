package dualmem

import "unsafe"

// Scores sets alpha[i] and contribution[i] to Score(q, idx[i]) for every listed token: the
// evidence of an answer scores hundreds of thousands of scattered tokens, so this is Score
// with float32 products summed in dot32's four chains (the scan's own α are float32 too),
// four tokens at a time.
func (s *Scanner) Scores(q Query, idx []int32, alpha, contribution []float64) {
	din, dout := s.DIn, s.DOut
	keys, grads := s.Mem.Keys, s.Mem.Grads
	i := 0
	if din >= 4 && (q.Token >= 0 || dout >= 4) {
		var ka, ga [16]float32
		for ; i+4 <= len(idx); i += 4 {
			j := idx[i : i+4 : i+4]
			k := [4][]float32{keys[int(j[0])*din:][:din], keys[int(j[1])*din:][:din], keys[int(j[2])*din:][:din], keys[int(j[3])*din:][:din]}
			g := [4][]float32{grads[int(j[0])*dout:][:dout], grads[int(j[1])*dout:][:dout], grads[int(j[2])*dout:][:dout], grads[int(j[3])*dout:][:dout]}
			dotLanes4(&k[0][0], &k[1][0], &k[2][0], &k[3][0], &q.X[0], din&^3, &ka)
			if q.Token < 0 {
				dotLanes4(&g[0][0], &g[1][0], &g[2][0], &g[3][0], &q.U[0], dout&^3, &ga)
			}
			for r := range 4 {
				a := float64(finishDot(&ka, r, k[r], q.X))
				var proj float64
				if q.Token >= 0 {
					proj = float64(g[r][q.Token])
				} else {
					proj = float64(finishDot(&ga, r, g[r], q.U))
				}
				alpha[i+r], contribution[i+r] = a, a*s.SW[s.StepIndex(int(j[r]))]*proj
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

// finishDot completes dot32(a, b) for row r of dotLanes4's lanes: the last len(a)%4
// products go into the first chain, as in dot32.
func finishDot(lanes *[16]float32, r int, a, b []float32) float32 {
	s0, s1, s2, s3 := lanes[4*r], lanes[4*r+1], lanes[4*r+2], lanes[4*r+3]
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

// dotLanes4Go is dotLanes4 in Go: the four chains of dot32 over the first n values (a
// multiple of 4) of rows k0..k3 against x.
func dotLanes4Go(k0, k1, k2, k3, x *float32, n int, out *[16]float32) {
	xs := unsafe.Slice(x, n)
	for r, k := range [4]*float32{k0, k1, k2, k3} {
		ks := unsafe.Slice(k, n)
		var s [4]float32
		for i := 0; i < n; i += 4 {
			for l := range 4 {
				s[l] += float32(ks[i+l] * xs[i+l])
			}
		}
		copy(out[4*r:4*r+4], s[:])
	}
}
