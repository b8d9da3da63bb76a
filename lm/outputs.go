package lm

import (
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The graphs return flat output lists; these types name them. The graph builder fills one
// with nodes and flattens it, the caller unflattens the executed tensors into the same type,
// and both walk the one slots method, so the order cannot drift between them.

// capture is one captured layer's output of the train step.
type capture[T any] struct {
	Keys  T // [B·T, DIn] the layer's input
	Grads T // [B·T, DOut] ∂loss/∂y
}

// trainOutputs is what one train step returns.
type trainOutputs[T any] struct {
	Params, Bufs []T // updated, in paramSpecs order
	Loss, Clip   T   // scalars
	Captured     map[string]*capture[T]
}

func newTrainOutputs[T any](params int, layers []Layer) *trainOutputs[T] {
	o := &trainOutputs[T]{Params: make([]T, params), Bufs: make([]T, params), Captured: map[string]*capture[T]{}}
	for _, l := range layers {
		o.Captured[l.Name] = &capture[T]{}
	}
	return o
}

// slots lists every output in graph order; layers gives the captured layers' order.
func (o *trainOutputs[T]) slots(layers []Layer) []*T {
	var s []*T
	for i := range o.Params {
		s = append(s, &o.Params[i])
	}
	for i := range o.Bufs {
		s = append(s, &o.Bufs[i])
	}
	s = append(s, &o.Loss, &o.Clip)
	for _, l := range layers {
		c := o.Captured[l.Name]
		s = append(s, &c.Keys, &c.Grads)
	}
	return s
}

// probeLayer is one layer read at the probed position of each row.
type probeLayer[T any] struct {
	X, Y, DY T // [B, DIn], [B, DOut], [B, DOut]: input, output, ∂(chosen logit)/∂y
}

// probeOutputs is what the probe graph returns.
type probeOutputs[T any] struct {
	Logits   T // [B, V] at the probed position
	RunnerUp T // [B] int32: the highest logit other than the target's
	Layers   map[string]*probeLayer[T]
}

func newProbeOutputs[T any](layers []Layer) *probeOutputs[T] {
	o := &probeOutputs[T]{Layers: map[string]*probeLayer[T]{}}
	for _, l := range layers {
		o.Layers[l.Name] = &probeLayer[T]{}
	}
	return o
}

func (o *probeOutputs[T]) slots(layers []Layer) []*T {
	s := []*T{&o.Logits, &o.RunnerUp}
	for _, l := range layers {
		p := o.Layers[l.Name]
		s = append(s, &p.X, &p.Y, &p.DY)
	}
	return s
}

// read lists the slots' values in order (graph side).
func read[T any](slots []*T) []T {
	out := make([]T, len(slots))
	for i, p := range slots {
		out[i] = *p
	}
	return out
}

// fill writes executed outputs into the slots (caller side).
func fill[T any](slots []*T, outs []T) error {
	if len(outs) != len(slots) {
		return fmt.Errorf("graph returned %d outputs, its layout has %d", len(outs), len(slots))
	}
	for i, p := range slots {
		*p = outs[i]
	}
	return nil
}

// checkCaptured verifies that each captured tensor has its layer's shape, [tokens, DIn]
// and [tokens, DOut].
func checkCaptured(o *trainOutputs[*tensors.Tensor], layers []Layer, tokens int) error {
	for _, l := range layers {
		c := o.Captured[l.Name]
		if err := checkDims(l.Name+" keys", c.Keys, tokens, l.DIn); err != nil {
			return err
		}
		if err := checkDims(l.Name+" grads", c.Grads, tokens, l.DOut); err != nil {
			return err
		}
	}
	return nil
}

// checkProbe verifies that each probed layer has its layer's widths for rows rows.
func checkProbe(o *probeOutputs[*tensors.Tensor], layers []Layer, rows int) error {
	if err := checkDims("runner-up", o.RunnerUp, rows); err != nil {
		return err
	}
	for _, l := range layers {
		p := o.Layers[l.Name]
		for _, c := range []struct {
			what string
			t    *tensors.Tensor
			d    int
		}{{"x", p.X, l.DIn}, {"y", p.Y, l.DOut}, {"dy", p.DY, l.DOut}} {
			if err := checkDims(l.Name+" "+c.what, c.t, rows, c.d); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkDims(what string, t *tensors.Tensor, dims ...int) error {
	if got := t.Shape().Dimensions; !slices.Equal(got, dims) {
		return fmt.Errorf("%s: shape %v, want %v", what, got, dims)
	}
	return nil
}
