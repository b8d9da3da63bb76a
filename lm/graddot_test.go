package lm

import (
	"context"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// explicitGradDot is the reference: each token's gradient ∇θ(nll_j/(B·Ctx)) over every
// parameter, computed alone (the step's loss with the one-hot mask of j), dotted with each
// query's gradient, in float64. Returns [query][k·B·Ctx + j] as GradDotResult.Scores.
func explicitGradDot(t *testing.T, tr *Trainer, snap []byte, steps []int, queries [][]int32, targets []int32) [][]float64 {
	t.Helper()
	ex, err := newInfluenceExecs(tr.Cfg, dtypes.Float64, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.finalize()
	backend, err := sharedBackend()
	if err != nil {
		t.Fatal(err)
	}
	P := len(ex.specs)
	grad, err := NewExec(backend, func(in []*Node) []*Node {
		logits, _ := forward(ex.cfg, weightsFor(ex.specs, in[:P]), in[P])
		return Gradient(maskedLoss(logits, in[P+1], in[P+2], ex.cfg.Vocab), in[:P]...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer grad.Finalize()
	_, _, st, err := decodeCheckpoint(snap)
	if err != nil {
		t.Fatal(err)
	}
	params := ex.toDType(st.Params)
	defer freeAll(params)
	flat := func(ts []*tensors.Tensor) (out []float64) {
		for _, x := range ts {
			out = append(out, float64s(x)...)
		}
		return out
	}
	var lambdas [][]float64
	for q := range queries {
		_, g, err := ex.queryGrads(params, queries[q:q+1], targets[q:q+1])
		if err != nil {
			t.Fatal(err)
		}
		lambdas = append(lambdas, flat(g))
	}
	n := tr.Cfg.Batch * tr.Cfg.Ctx
	out := make([][]float64, len(queries))
	for k, s := range steps {
		bargs := tr.batchArgs(ex, tr.BatchAt(s), s)
		for j := range n {
			m := make([]float64, n)
			m[j] = 1
			g, err := grad.Exec(args(params, bargs[0], bargs[1], ex.mask(m))...)
			if err != nil {
				t.Fatal(err)
			}
			gj := flat(g)
			for q, l := range lambdas {
				var d float64
				for i, x := range gj {
					d += x * l[i]
				}
				if k == 0 && j == 0 {
					out[q] = make([]float64, len(steps)*n)
				}
				out[q][k*n+j] = d
			}
		}
	}
	return out
}

// The mask derivative is the dot product of per-token gradients over every parameter: in
// float64 to 1e-8 relative, in float32 to 1e-4, at a mid-run and the final checkpoint, for
// batches before and after the checkpoint, with a query batch that needs padding.
func TestGradDotIsPerTokenGradientDot(t *testing.T) {
	const steps = 5
	tr, snaps, _ := influenceRun(t, steps)
	queries, targets := tr.HeldOut(3)
	batches := []int{1, 3, 5}
	for _, at := range []int{2, steps} {
		want := explicitGradDot(t, tr, snaps[at], batches, queries, targets)
		for _, tc := range []struct {
			f64 bool
			tol float64
		}{{true, 1e-8}, {false, 1e-4}} {
			res, err := tr.GradDot(context.Background(), queries, targets, snaps[at], batches,
				GradDotOptions{Float64: tc.f64, QueryBatch: 2})
			if err != nil {
				t.Fatal(err)
			}
			if res.Step != at || len(res.Scores) != len(queries) || len(res.QueryLoss) != len(queries) {
				t.Fatalf("result at step %d for %d queries: %+v", res.Step, len(res.Scores), res.QueryLoss)
			}
			for q := range queries {
				rel := relErr(res.Scores[q], want[q])
				t.Logf("snapshot %d float64=%v query %d: max |score| %.3g, relative error %.2g", at, tc.f64, q,
					maxAbs(want[q]), rel)
				if !(rel <= tc.tol) {
					t.Errorf("snapshot %d float64=%v query %d: relative error %.3g > %g", at, tc.f64, q, rel, tc.tol)
				}
			}
		}
	}
}

func maxAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

func TestGradDotRejectsBadInput(t *testing.T) {
	tr, snaps, _ := influenceRun(t, 2)
	other, err := NewTrainer(influenceConfig(3), testText(20000))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	foreign, _ := other.Checkpoint()
	q, tg := tr.HeldOut(1)
	for _, tc := range []struct {
		name    string
		queries [][]int32
		targets []int32
		snap    []byte
		steps   []int
		opts    GradDotOptions
	}{
		{"no queries", nil, nil, snaps[2], []int{1}, GradDotOptions{}},
		{"targets count", q, []int32{1, 2}, snaps[2], []int{1}, GradDotOptions{}},
		{"token outside vocab", [][]int32{{int32(tr.Cfg.Vocab)}}, tg, snaps[2], []int{1}, GradDotOptions{}},
		{"corrupt snapshot", q, tg, []byte("x"), []int{1}, GradDotOptions{}},
		{"snapshot of another run", q, tg, foreign, []int{1}, GradDotOptions{}},
		{"no steps", q, tg, snaps[2], nil, GradDotOptions{}},
		{"step 0", q, tg, snaps[2], []int{1, 0}, GradDotOptions{}},
		{"step past the run", q, tg, snaps[2], []int{3}, GradDotOptions{}},
		{"negative query batch", q, tg, snaps[2], []int{1}, GradDotOptions{QueryBatch: -1}},
	} {
		if _, err := tr.GradDot(context.Background(), tc.queries, tc.targets, tc.snap, tc.steps, tc.opts); err == nil {
			t.Errorf("%s: accepted", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.GradDot(ctx, q, tg, snaps[2], []int{1, 2}, GradDotOptions{}); err == nil {
		t.Error("a cancelled context ran to the end")
	}
}
