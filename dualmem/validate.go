package dualmem

import (
	"fmt"
	"math"
	"strings"

	"github.com/spotlight-lm/spotlight/lm"
)

func validateMeta(meta Meta, initial map[string]lm.Initial) error {
	if meta.Precision != F32 && meta.Precision != F16 {
		return fmt.Errorf("precision %q: want %q or %q", meta.Precision, F32, F16)
	}
	if len(meta.Layers) == 0 || len(meta.Layers) > 1<<16 {
		return fmt.Errorf("%d captured layers: want 1 to %d", len(meta.Layers), 1<<16)
	}
	if !finite(meta.Optimizer.Momentum) || meta.Optimizer.Momentum < 0 || meta.Optimizer.Momentum >= 1 {
		return fmt.Errorf("momentum %v: want 0 <= μ < 1", meta.Optimizer.Momentum)
	}
	if !finite(meta.Optimizer.WeightDecay) || !finite(meta.Optimizer.BiasDecay) || meta.Optimizer.WeightDecay < 0 || meta.Optimizer.BiasDecay < 0 {
		return fmt.Errorf("weight decay %v, bias decay %v: want finite and >= 0", meta.Optimizer.WeightDecay, meta.Optimizer.BiasDecay)
	}
	seen := map[string]bool{}
	for _, l := range meta.Layers {
		switch {
		case l.Name == "" || strings.HasPrefix(l.Name, "@"):
			return fmt.Errorf("layer name %q: want non-empty, not starting with '@'", l.Name)
		case seen[l.Name]:
			return fmt.Errorf("layer %q listed twice", l.Name)
		case l.DIn <= 0 || l.DOut <= 0:
			return fmt.Errorf("layer %q: dimensions %d×%d must be positive", l.Name, l.DIn, l.DOut)
		}
		seen[l.Name] = true
		in, ok := initial[l.Name]
		if !ok {
			return fmt.Errorf("layer %q: no initial weights", l.Name)
		}
		if len(in.W) != l.DIn*l.DOut || len(in.B) != l.DOut {
			return fmt.Errorf("layer %q: initial W has %d values and B %d, want %d×%d=%d and %d",
				l.Name, len(in.W), len(in.B), l.DIn, l.DOut, l.DIn*l.DOut, l.DOut)
		}
	}
	for name := range initial {
		if !seen[name] {
			return fmt.Errorf("initial weights for layer %q, which meta does not list", name)
		}
	}
	return nil
}

// validateStep checks st against meta; next is the only acceptable step number.
func validateStep(meta Meta, st *lm.Step, next int) error {
	if st == nil {
		return fmt.Errorf("nil step")
	}
	if st.Step != next {
		return fmt.Errorf("step %d appended, want step %d", st.Step, next)
	}
	if st.Rows <= 0 || st.Ctx <= 0 {
		return fmt.Errorf("step %d: %d rows × %d positions", st.Step, st.Rows, st.Ctx)
	}
	if !finite(float64(st.LR)) || !finite(float64(st.Clip)) {
		return fmt.Errorf("step %d: learning rate %v and clip %v must be finite", st.Step, st.LR, st.Clip)
	}
	n := st.Tokens()
	if len(st.Offsets) != n || len(st.Targets) != n {
		return fmt.Errorf("step %d: %d offsets and %d targets, want %d", st.Step, len(st.Offsets), len(st.Targets), n)
	}
	if len(st.Layers) != len(meta.Layers) {
		return fmt.Errorf("step %d: %d layers, want %d", st.Step, len(st.Layers), len(meta.Layers))
	}
	for _, l := range meta.Layers {
		ls, ok := st.Layers[l.Name]
		if !ok {
			return fmt.Errorf("step %d: layer %q missing", st.Step, l.Name)
		}
		if len(ls.Keys) != n*l.DIn || len(ls.Grads) != n*l.DOut {
			return fmt.Errorf("step %d, layer %q: %d keys and %d grads, want %d×%d and %d×%d",
				st.Step, l.Name, len(ls.Keys), len(ls.Grads), n, l.DIn, n, l.DOut)
		}
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
