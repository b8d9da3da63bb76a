package dualmem

// Scores sets alpha[i] and contribution[i] to Score(q, idx[i]) for every listed token: the
// evidence of an answer scores hundreds of thousands of scattered tokens, so this is Score
// with float32 products summed four at a time (the scan's own α are float32 too).
func (s *Scanner) Scores(q Query, idx []int32, alpha, contribution []float64) {
	din, dout := s.DIn, s.DOut
	for i, j := range idx {
		a := float64(dot32(s.Mem.Keys[int(j)*din:int(j+1)*din], q.X))
		g := s.Mem.Grads[int(j)*dout : int(j+1)*dout]
		var proj float64
		if q.Token >= 0 {
			proj = float64(g[q.Token])
		} else {
			proj = float64(dot32(g, q.U))
		}
		alpha[i], contribution[i] = a, a*s.SW[s.StepIndex(int(j))]*proj
	}
}

// dot32 is a·b over len(a) values in four float32 chains.
func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
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
