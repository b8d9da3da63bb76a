package lm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// ParamClass says which weight decay a parameter gets (Optimizer.Decay).
type ParamClass string

const (
	WeightParam ParamClass = "weight" // linear weights and embeddings: WeightDecay
	BiasParam   ParamClass = "bias"   // linear biases: BiasDecay
	NormParam   ParamClass = "norm"   // LayerNorm gains and shifts: never decayed
)

// ParamSpec describes one trainable tensor.
type ParamSpec struct {
	Name  string     `json:"name"`
	Shape []int      `json:"shape"`
	Class ParamClass `json:"class"`
}

// Size is the number of floats in the tensor.
func (p ParamSpec) Size() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// paramSpecs lists the model's parameters in a fixed order, the order of every graph input
// (and of checkpoints). The capturable linears take their widths from the layer table.
func paramSpecs(c Config) []ParamSpec {
	d := c.D
	table := map[string]Layer{}
	for _, l := range c.LayerTable() {
		table[l.Name] = l
	}
	w := func(name string, in, out int) []ParamSpec {
		return []ParamSpec{{name + ".w", []int{in, out}, WeightParam}, {name + ".b", []int{out}, BiasParam}}
	}
	layer := func(name string) []ParamSpec { l := table[name]; return w(l.Name, l.DIn, l.DOut) }
	ln := func(name string) []ParamSpec {
		return []ParamSpec{{name + ".g", []int{d}, NormParam}, {name + ".b", []int{d}, NormParam}}
	}
	specs := []ParamSpec{{"embed", []int{c.Vocab, d}, WeightParam}, {"pos", []int{c.Ctx, d}, WeightParam}}
	for b := range c.Blocks {
		n := blockName(b)
		specs = append(specs, ln(n+".ln1")...)
		specs = append(specs, w(n+".qkv", d, 3*d)...)
		specs = append(specs, w(n+".proj", d, d)...)
		specs = append(specs, ln(n+".ln2")...)
		specs = append(specs, layer(FFLayer(b, 1))...)
		specs = append(specs, layer(FFLayer(b, 2))...)
	}
	specs = append(specs, ln("lnf")...)
	return append(specs, layer(OutLayer)...)
}

// State is everything training needs to continue: parameters and momentum buffers, as
// flat float32 slices in paramSpecs order, and the number of steps taken.
type State struct {
	Step   int
	Params [][]float32
	Bufs   [][]float32
}

// initState draws the initial weights from the seed alone, so a run is reproducible
// whatever the backend: N(0, 0.02) weights, residual projections scaled by 1/√(2·blocks)
// as in GPT-2, unit LayerNorm gains, zero biases.
func initState(c Config, specs []ParamSpec) *State {
	rng := rand.New(rand.NewPCG(c.Seed, 0x5eed))
	s := &State{}
	for _, p := range specs {
		v := make([]float32, p.Size())
		std := 0.02
		if strings.HasSuffix(p.Name, ".proj.w") || strings.HasSuffix(p.Name, ".ff2.w") {
			std /= math.Sqrt(2 * float64(c.Blocks))
		}
		switch {
		case strings.HasSuffix(p.Name, ".g"):
			for i := range v {
				v[i] = 1
			}
		case p.Class == WeightParam:
			for i := range v {
				v[i] = float32(rng.NormFloat64() * std)
			}
		}
		s.Params = append(s.Params, v)
		s.Bufs = append(s.Bufs, make([]float32, p.Size()))
	}
	return s
}

// checkpoint layout: magic, a JSON header (config, tokenizer, step, param specs), then every
// parameter and buffer as little-endian float32.
const checkpointMagic = "spotlight-ckpt-1\n"

type checkpointHeader struct {
	Config    Config      `json:"config"`
	Tokenizer *Tokenizer  `json:"tokenizer"`
	Step      int         `json:"step"`
	Params    []ParamSpec `json:"params"`
}

// encodeCheckpoint serialises a model state with its config, so a checkpoint is self-describing.
func encodeCheckpoint(c Config, tok *Tokenizer, s *State) ([]byte, error) {
	hdr, err := json.Marshal(checkpointHeader{c, tok, s.Step, paramSpecs(c)})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(checkpointMagic)
	_ = binary.Write(&buf, binary.LittleEndian, uint32(len(hdr)))
	buf.Write(hdr)
	for _, group := range [][][]float32{s.Params, s.Bufs} {
		for _, v := range group {
			_ = binary.Write(&buf, binary.LittleEndian, v)
		}
	}
	return buf.Bytes(), nil
}

// decodeCheckpoint is the inverse of encodeCheckpoint; it checks every shape.
func decodeCheckpoint(b []byte) (Config, *Tokenizer, *State, error) {
	fail := func(format string, args ...any) (Config, *Tokenizer, *State, error) {
		return Config{}, nil, nil, fmt.Errorf("corrupt checkpoint: "+format, args...)
	}
	if !bytes.HasPrefix(b, []byte(checkpointMagic)) {
		return fail("bad magic")
	}
	r := bytes.NewReader(b[len(checkpointMagic):])
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || int(n) > r.Len() {
		return fail("bad header length")
	}
	hdrBytes := make([]byte, n)
	_, _ = r.Read(hdrBytes)
	var hdr checkpointHeader
	if err := json.Unmarshal(hdrBytes, &hdr); err != nil {
		return fail("%v", err)
	}
	specs := paramSpecs(hdr.Config)
	if len(specs) != len(hdr.Params) {
		return fail("%d parameters, config implies %d", len(hdr.Params), len(specs))
	}
	s := &State{Step: hdr.Step}
	for _, group := range []*[][]float32{&s.Params, &s.Bufs} {
		for i, p := range specs {
			if p.Name != hdr.Params[i].Name || p.Size() != hdr.Params[i].Size() {
				return fail("parameter %d is %s, config implies %s", i, hdr.Params[i].Name, p.Name)
			}
			v := make([]float32, p.Size())
			if err := binary.Read(r, binary.LittleEndian, v); err != nil {
				return fail("parameter %s: %v", p.Name, err)
			}
			*group = append(*group, v)
		}
	}
	if r.Len() != 0 {
		return fail("%d trailing bytes", r.Len())
	}
	return hdr.Config, hdr.Tokenizer, s, nil
}
