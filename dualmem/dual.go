package dualmem

import "fmt"

// Coefficients returns the dual-form scalars of the memory's recorded learning rates:
// W_final = aW·W_1 + Σ_t betaW[t]·c_t·Σ_i k_{t,i}ᵀ g_{t,i} and likewise for the bias with
// aB, betaB (its own decay, meta.BiasDecay). Index t-1 holds step t.
func (m *LayerMemory) Coefficients(meta Meta) (aW, aB float64, betaW, betaB []float64) {
	lr := make([]float64, len(m.Steps))
	for k, si := range m.Steps {
		lr[k] = float64(si.LR)
	}
	aW, betaW = Coefficients(lr, meta.Momentum, meta.WeightDecay)
	aB, betaB = Coefficients(lr, meta.Momentum, meta.BiasDecay)
	return aW, aB, betaW, betaB
}

// Reconstruct returns the layer's output for input x (len DIn) computed from the memory
// alone, in float64:
//
//	y = aW·(xᵀW_1) + aB·b_1 + Σ_t Σ_i (betaW_t c_t (k_{t,i}·x) + betaB_t c_t) g_{t,i}
//
// It is the reference dual: a plain loop over every token.
func (m *LayerMemory) Reconstruct(meta Meta, x []float32) []float64 {
	din, dout := m.Spec.DIn, m.Spec.DOut
	if len(x) != din {
		panic(fmt.Sprintf("dualmem: Reconstruct: input has %d values, layer %q takes %d", len(x), m.Spec.Name, din))
	}
	aW, aB, betaW, betaB := m.Coefficients(meta)
	sW, sB := make([]float64, len(m.Steps)), make([]float64, len(m.Steps))
	for k, si := range m.Steps {
		sW[k], sB[k] = betaW[k]*float64(si.Clip), betaB[k]*float64(si.Clip)
	}
	y := make([]float64, dout)
	for k, xk := range x {
		row := m.Initial.W[k*dout : (k+1)*dout]
		for j, w := range row {
			y[j] += float64(xk) * float64(w)
		}
	}
	for j := range y {
		y[j] = aW*y[j] + aB*float64(m.Initial.B[j])
	}
	first := int32(1)
	if len(m.Steps) > 0 {
		first = int32(m.Steps[0].Step)
	}
	for i, st := range m.Step {
		var dot float64
		for k, kv := range m.Keys[i*din : (i+1)*din] {
			dot += float64(kv) * float64(x[k])
		}
		t := st - first
		coef := sW[t]*dot + sB[t]
		for j, g := range m.Grads[i*dout : (i+1)*dout] {
			y[j] += coef * float64(g)
		}
	}
	return y
}
