package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"github.com/spotlight-lm/spotlight/lm"
)

// hyper is one lm.Config field settable by a flag. Its value applies over the preset only
// when the flag is set, so each field's default is its preset's.
type hyper struct {
	name, usage string
	field       func(*lm.Config) any // the field's address: *int, *float64 or *uint64
	fixed       string               // why --resume refuses to change it; "" means it may
}

// Reasons a resumed run keeps a setting.
const (
	fixedShape     = "the model's shape is fixed by its checkpoint"
	fixedOptimizer = "the recorded dual form assumes one optimizer setting for the whole run"
	fixedBatches   = "the run's batches (size and order) are fixed when it starts"
	fixedMemory    = "the memory's layers and precision are fixed when the directory is created"
	fixedRun       = "the run keeps the preset and corpus it was created with"
)

// hypers is every hyperparameter flag, in --help order.
var hypers = []hyper{
	{"steps", "total optimizer steps; the cosine schedule spans them (with --resume: the step to train to)", func(c *lm.Config) any { return &c.Steps }, ""},
	{"checkpoint-every", "steps between checkpoints", func(c *lm.Config) any { return &c.CheckpointEvery }, ""},
	{"batch", "rows per batch", func(c *lm.Config) any { return &c.Batch }, fixedBatches},
	{"seed", "seed for initialisation and batch order", func(c *lm.Config) any { return &c.Seed }, fixedBatches},
	{"lr", "peak learning rate", func(c *lm.Config) any { return &c.LR }, fixedOptimizer},
	{"warmup", "linear warmup steps before cosine decay", func(c *lm.Config) any { return &c.Warmup }, fixedOptimizer},
	{"momentum", "heavy-ball momentum", func(c *lm.Config) any { return &c.Momentum }, fixedOptimizer},
	{"weight-decay", "coupled weight decay (not on biases or LayerNorm)", func(c *lm.Config) any { return &c.WeightDecay }, fixedOptimizer},
	{"clip", "global gradient-norm clip (0 disables)", func(c *lm.Config) any { return &c.Clip }, fixedOptimizer},
	{"d", "model width", func(c *lm.Config) any { return &c.D }, fixedShape},
	{"blocks", "transformer blocks", func(c *lm.Config) any { return &c.Blocks }, fixedShape},
	{"heads", "attention heads", func(c *lm.Config) any { return &c.Heads }, fixedShape},
	{"ctx", "context length in characters", func(c *lm.Config) any { return &c.Ctx }, fixedShape},
}

// configFlags are a command's hyperparameter flags, bound into a zero Config.
type configFlags struct {
	fs     *pflag.FlagSet
	values lm.Config
	hypers []hyper
}

// bindConfig adds every hyperparameter flag but those named in except to fs.
func bindConfig(fs *pflag.FlagSet, except ...string) *configFlags {
	f := &configFlags{fs: fs}
	for _, h := range hypers {
		if slices.Contains(except, h.name) {
			continue
		}
		f.hypers = append(f.hypers, h)
		usage := h.usage + " (default: the preset's)"
		switch p := h.field(&f.values).(type) {
		case *int:
			fs.IntVar(p, h.name, 0, usage)
		case *float64:
			fs.Float64Var(p, h.name, 0, usage)
		case *uint64:
			fs.Uint64Var(p, h.name, 0, usage)
		}
	}
	return f
}

// apply copies every flag the user set into c.
func (f *configFlags) apply(c *lm.Config) {
	for _, h := range f.hypers {
		if !f.fs.Changed(h.name) {
			continue
		}
		switch p := h.field(c).(type) {
		case *int:
			*p = *h.field(&f.values).(*int)
		case *float64:
			*p = *h.field(&f.values).(*float64)
		case *uint64:
			*p = *h.field(&f.values).(*uint64)
		}
	}
}

// config is the named preset with the flags the user set applied over it.
func (f *configFlags) config(preset string) (lm.Config, error) {
	c, err := lm.Preset(preset)
	if err != nil {
		return c, err
	}
	f.apply(&c)
	return c, nil
}

// fitted is config for a run that --steps may shorten: a preset warmup as long as the run
// becomes a tenth of it, unless --warmup is set too.
func (f *configFlags) fitted(preset string) (lm.Config, error) {
	c, err := f.config(preset)
	if err != nil {
		return c, err
	}
	if f.fs.Changed("steps") && !f.fs.Changed("warmup") && c.Warmup >= c.Steps {
		c.Warmup = c.Steps / 10
	}
	return c, c.Validate()
}

// anySet names the first of these flags (or of the hyperparameters) the user set, or "".
func (f *configFlags) anySet(names ...string) string {
	for _, h := range f.hypers {
		names = append(names, h.name)
	}
	for _, n := range names {
		if f.fs.Changed(n) {
			return n
		}
	}
	return ""
}

// presetTable is the Long-help table of each hyperparameter's value in every preset (a flag
// default can show only one value).
func (f *configFlags) presetTable() string {
	names := make([]string, 0, len(lm.Presets))
	for n := range lm.Presets {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  flag\t%s\n", strings.Join(names, "\t"))
	for _, h := range f.hypers {
		fmt.Fprintf(w, "  --%s", h.name)
		for _, n := range names {
			c := lm.Presets[n]
			fmt.Fprintf(w, "\t%v", fieldValue(h.field(&c)))
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	return "Hyperparameter defaults per --preset (a flag you set overrides its preset's value):\n" + b.String()
}

// fieldValue dereferences a field address from hyper.field.
func fieldValue(p any) any {
	switch p := p.(type) {
	case *int:
		return *p
	case *float64:
		return *p
	case *uint64:
		return *p
	}
	return p
}
