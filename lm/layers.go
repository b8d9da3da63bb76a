package lm

import (
	"fmt"
	"slices"
	"strings"
)

// OutLayer is the output layer's name: logits = out(lnf(x)).
const OutLayer = "out"

// FFLayer names feed-forward linear n (1: d→4d, 2: 4d→d) of a block, "block{b}.ff{n}".
func FFLayer(block, n int) string { return fmt.Sprintf("%s.ff%d", blockName(block), n) }

// blockName is the parameter prefix of a transformer block.
func blockName(b int) string { return fmt.Sprintf("block%d", b) }

// Layer is one capturable linear layer y = x·W + b with W of shape [DIn, DOut]. Its name is
// the API's layer name and the prefix of its parameters (Name+".w", Name+".b").
type Layer struct {
	Name      string
	DIn, DOut int
	Captured  bool // the training step records its keys and gradients
	Exact     bool // the dual form gives the chosen token's logit exactly; otherwise first-order
}

// LayerTable lists every capturable layer in model order. It is the one place that says
// which layers exist and how wide they are: parameters, forward taps, graph outputs and
// the memory's layer list all come from it.
func (c Config) LayerTable() []Layer {
	var ls []Layer
	for b := range c.Blocks {
		ls = append(ls, Layer{Name: FFLayer(b, 1), DIn: c.D, DOut: c.FF()},
			Layer{Name: FFLayer(b, 2), DIn: c.FF(), DOut: c.D})
	}
	ls = append(ls, Layer{Name: OutLayer, DIn: c.D, DOut: c.Vocab, Exact: true})
	for i := range ls {
		ls[i].Captured = len(c.Layers) == 0 || slices.Contains(c.Layers, ls[i].Name)
	}
	return ls
}

// Layer returns the named capturable layer.
func (c Config) Layer(name string) (Layer, error) {
	for _, l := range c.LayerTable() {
		if l.Name == name {
			return l, nil
		}
	}
	return Layer{}, fmt.Errorf("unknown layer %q (known: %s)", name, strings.Join(c.LayerNames(), ", "))
}

// CapturedTable is the captured layers in the order the config lists them (model order
// when it lists none): the order of the memory's layers.
func (c Config) CapturedTable() []Layer {
	if len(c.Layers) == 0 {
		return c.LayerTable()
	}
	ls := make([]Layer, 0, len(c.Layers))
	for _, name := range c.Layers {
		if l, err := c.Layer(name); err == nil {
			ls = append(ls, l)
		}
	}
	return ls
}

// LayerNames lists every capturable layer in model order; these are the API's layer names.
func (c Config) LayerNames() []string { return layerNames(c.LayerTable()) }

// CapturedLayers is Layers with the empty default expanded to all layers.
func (c Config) CapturedLayers() []string { return layerNames(c.CapturedTable()) }

// LayerDims gives a capturable layer's input and output widths.
func (c Config) LayerDims(name string) (din, dout int, err error) {
	l, err := c.Layer(name)
	return l.DIn, l.DOut, err
}

func layerNames(ls []Layer) []string {
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.Name
	}
	return names
}
