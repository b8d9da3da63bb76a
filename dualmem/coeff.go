package dualmem

// Coefficients returns the scalars of the dual form of SGD with heavy-ball momentum mu and
// coupled weight decay lambda (PyTorch SGD semantics, dampening 0, no Nesterov):
//
//	W_{T+1} = a·W_1 + Σ_s beta[s-1]·G_s
//
// where lr[s-1] = η_s is the learning rate applied at step s = 1..T and G_s = c_s·∇_s is the
// clipped gradient of step s. For T = 0 it returns a = 1 and no betas.
//
// Proof sketch. Step s maps the state (W_s, buf_{s-1}) linearly:
//
//	buf_s   = μ·buf_{s-1} + λ·W_s + G_s
//	W_{s+1} = W_s − η_s·buf_s = (1 − η_s λ)·W_s − η_s μ·buf_{s-1} − η_s·G_s
//
// with buf_0 = 0 (PyTorch's first step sets buf = d, the same thing). Let
// (u_s, v_s) = ∂W_{T+1}/∂(W_{s+1}, buf_s) be the adjoint of the state after step s, so
// u_T = 1, v_T = 0. G_s enters buf_s with weight 1 and W_{s+1} with weight −η_s, hence
// β_s = v_s − η_s·u_s. Differentiating the map above through W_s and buf_{s-1} gives
// u_{s-1} = (1 − η_s λ)·u_s + λ·v_s and v_{s-1} = −η_s μ·u_s + μ·v_s, and a = u_0 because
// buf_0 = 0 contributes nothing. Every coefficient is a scalar, so the same identity holds
// for every matrix entry, and for the bias with its own λ.
func Coefficients(lr []float64, mu, lambda float64) (a float64, beta []float64) {
	beta = make([]float64, len(lr))
	u, v := 1.0, 0.0
	for s := len(lr); s >= 1; s-- {
		eta := lr[s-1]
		beta[s-1] = -eta*u + v
		u, v = (1-eta*lambda)*u+lambda*v, -eta*mu*u+mu*v
	}
	return u, beta
}
