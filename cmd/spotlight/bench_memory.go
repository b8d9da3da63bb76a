package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/bench"
	"github.com/spotlight-lm/spotlight/dualmem"
)

// BenchMemoryCommand is the size sweep: one layer of a trained memory tiled on disk to
// each size, then the same requests timed on each, beside numpy over the same files.
type BenchMemoryCommand struct {
	Source   string // a trained data directory (only read)
	Layer    string
	Sizes    string // comma-separated token counts, with K or M suffixes
	Scratch  string // where the tiled directories are built (each removed after)
	Reps     int
	ColdReps int
	Cold     string // auto (when root), on, off
	AllLayer bool   // also the all-layer request on a copy of the source
	Prompt   string
	Python   string // "off" skips numpy
	SpareGB  float64
	JSON     string // also write the document here
	Markdown string // also write the table here

	measure measureOpts // set by the hidden --measure: be the measuring process
}

// memBench is the JSON document of `spotlight bench memory`.
type memBench struct {
	Source     string    `json:"source"`
	Layer      string    `json:"layer"`
	CPUs       int       `json:"cpus"`
	Reps       int       `json:"reps"`
	Started    time.Time `json:"started"`
	Sizes      []memSize `json:"sizes"`
	AllLayer   *memSize  `json:"all_layer,omitempty"`
	ReqTokens  int       `json:"request_tokens"`
	AllTokens  int       `json:"all_layer_request_tokens"`
	ScratchDir string    `json:"scratch"`
}

// memSize is one memory of the sweep.
type memSize struct {
	Tokens    int             `json:"tokens"`
	Skipped   string          `json:"skipped,omitempty"`
	BuildS    float64         `json:"build_s,omitempty"`
	DiskBytes int64           `json:"disk_bytes,omitempty"`
	KeyBytes  int64           `json:"key_grad_bytes,omitempty"` // keys and gradients of the layer(s) in the segments
	Go        *memRun         `json:"go,omitempty"`
	Numpy     json.RawMessage `json:"numpy,omitempty"`
	NumpyErr  string          `json:"numpy_error,omitempty"`
}

func newBenchMemoryCmd() *cobra.Command {
	c := &BenchMemoryCommand{}
	var measure, render string
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Size sweep: requests on a trained layer tiled on disk to each size, beside numpy over the same files",
		Example: `  spotlight bench memory --source /tmp/mem-default --sizes 1M,4M,16M --all-layer --json sweep.json --markdown sweep.md
  spotlight bench memory --source ./d --sizes 200K --reps 3 --cold off --python off`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if render != "" {
				return renderMemTable(render)
			}
			if measure != "" {
				c.measure.Dir = measure
				run, err := measureMemory(cmd.Context(), c.measure)
				if err != nil {
					return err
				}
				return printJSON(run)
			}
			return c.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Source, "source", "", "trained data directory whose layer is tiled (only read)")
	fl.StringVar(&c.Layer, "layer", "out", "layer to tile")
	fl.StringVar(&c.Sizes, "sizes", "1M,4M,16M", "training tokens of each tiled memory (K and M suffixes: 1M = 1,000,000; empty: none)")
	fl.StringVar(&c.Scratch, "scratch", os.TempDir(), "directory for the tiled memories (each is removed when measured)")
	fl.IntVar(&c.Reps, "reps", 5, "timed requests of each shape, after one warm-up")
	fl.IntVar(&c.ColdReps, "cold-reps", 0, "timed cold requests of each shape (0: as --reps)")
	fl.StringVar(&c.Cold, "cold", "auto", "also time requests with the page cache dropped before each: on, off, or auto (when root)")
	fl.BoolVar(&c.AllLayer, "all-layer", false, "also time the all-layer request on a copy of --source")
	fl.StringVar(&c.Prompt, "prompt", "The rays of light", "prompt of every request")
	fl.StringVar(&c.Python, "python", "python3", "Python interpreter with numpy for the reference scan (name on PATH or a path), or off")
	fl.Float64Var(&c.SpareGB, "spare-gb", 10, "skip a size that would leave less free disk than this")
	fl.StringVar(&c.JSON, "json", "", "write the JSON document to this file (it is always printed)")
	fl.StringVar(&c.Markdown, "markdown", "", "write the markdown table to this file (it is always printed)")
	fl.StringVar(&render, "render", "", "print the markdown table of a JSON document this command wrote, and stop")
	fl.StringVar(&measure, "measure", "", "measure this data directory and print its JSON (the sweep's child process)")
	fl.StringSliceVar(&c.measure.Layers, "measure-layers", nil, "layers the measured requests ask for")
	fl.IntVar(&c.measure.Tokens, "measure-tokens", 32, "tokens of each measured request")
	fl.BoolVar(&c.measure.Cold, "measure-cold", false, "also time the requests cold")
	fl.StringVar(&c.measure.Queries, "measure-queries", "", "write the request's queries here for the numpy reference")
	for _, h := range []string{"render", "measure", "measure-layers", "measure-tokens", "measure-cold", "measure-queries"} {
		_ = fl.MarkHidden(h)
	}
	cmd.PreRun = func(*cobra.Command, []string) {
		c.measure.Reps, c.measure.Prompt, c.measure.Seed = c.Reps, c.Prompt, 1
		if c.measure.ColdReps = c.ColdReps; c.ColdReps <= 0 {
			c.measure.ColdReps = c.Reps
		}
	}
	return cmd
}

// parseSizes reads "1M,4M,200K,5000".
func parseSizes(s string) ([]int, error) {
	var out []int
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mul := 1
		switch {
		case strings.HasSuffix(f, "M"):
			mul, f = 1_000_000, strings.TrimSuffix(f, "M")
		case strings.HasSuffix(f, "K"):
			mul, f = 1_000, strings.TrimSuffix(f, "K")
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--sizes: %q is not a positive token count", f)
		}
		out = append(out, n*mul)
	}
	return out, nil
}

// Run builds, measures and removes each size in turn, then prints the document and table.
func (c *BenchMemoryCommand) Run(ctx context.Context) error {
	if c.Source == "" {
		return fmt.Errorf("--source is required: a trained data directory")
	}
	sizes, err := parseSizes(c.Sizes)
	if err != nil {
		return err
	}
	if len(sizes) == 0 && !c.AllLayer {
		return fmt.Errorf("nothing to measure: give --sizes, --all-layer or both")
	}
	if c.Reps < 1 || c.ColdReps < 0 {
		return fmt.Errorf("--reps %d, --cold-reps %d: want at least 1 (--cold-reps 0 means as --reps)", c.Reps, c.ColdReps)
	}
	cold := c.Cold == "on" || (c.Cold == "auto" && os.Geteuid() == 0)
	if c.Cold != "on" && c.Cold != "off" && c.Cold != "auto" {
		return fmt.Errorf("--cold %q: want on, off or auto", c.Cold)
	}
	store, err := dualmem.OpenReadOnly(c.Source)
	if err != nil {
		return err
	}
	defer store.Close()
	src, err := openTileSource(store, c.Layer)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(c.Scratch, "spotlight-sweep-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	doc := memBench{Source: c.Source, Layer: c.Layer, CPUs: runtime.NumCPU(), Reps: c.Reps, Started: time.Now().UTC(),
		ReqTokens: 32, AllTokens: 16, ScratchDir: scratch}
	if c.AllLayer {
		doc.AllLayer = c.allLayer(ctx, store, scratch, cold)
	}
	for _, n := range sizes {
		doc.Sizes = append(doc.Sizes, c.size(ctx, src, scratch, n, cold))
	}
	b, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return err
	}
	md := memTable(doc)
	fmt.Println(string(b))
	fmt.Print(md)
	if c.JSON != "" {
		if err := os.WriteFile(c.JSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if c.Markdown != "" {
		return os.WriteFile(c.Markdown, []byte(md), 0o644)
	}
	return nil
}

// size builds the tiled memory of n tokens, measures it and numpy on it, and removes it.
func (c *BenchMemoryCommand) size(ctx context.Context, src *tileSource, scratch string, n int, cold bool) memSize {
	ms := memSize{Tokens: n}
	need := tileBytes(src.meta, n)
	free, err := freeBytes(scratch)
	if err == nil && free-need < int64(c.SpareGB*1e9) {
		err = fmt.Errorf("needs about %.1f GB of the %.1f GB free, leaving less than --spare-gb %g", float64(need)/1e9, float64(free)/1e9, c.SpareGB)
	}
	if err != nil {
		ms.Skipped = err.Error()
		fmt.Fprintf(os.Stderr, "bench memory: %d tokens skipped: %s\n", n, ms.Skipped)
		return ms
	}
	dir := filepath.Join(scratch, fmt.Sprintf("%s-%d", c.Layer, n))
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "bench memory: building %d tokens of %q in %s\n", n, c.Layer, dir)
	t0 := time.Now()
	if _, err := buildTiled(src, dir, n, func(done, total int) {
		fmt.Fprintf(os.Stderr, "\r  %d/%d tokens", done, total)
	}); err != nil {
		ms.Skipped = "build: " + err.Error()
		return ms
	}
	ms.BuildS, ms.DiskBytes = since(t0), dirBytes(dir)
	fmt.Fprintf(os.Stderr, "\n  built in %.0f s, %.2f GB on disk\n", ms.BuildS, float64(ms.DiskBytes)/1e9)
	c.measureDir(ctx, &ms, dir, []string{c.Layer}, 32, cold)
	return ms
}

// allLayer times the all-layer request on a copy of the source (the copy's first open
// builds its aggregates and bounds, which the source may lack and must not be given).
func (c *BenchMemoryCommand) allLayer(ctx context.Context, store *dualmem.Store, scratch string, cold bool) *memSize {
	ms := &memSize{}
	need := dirBytes(c.Source) * 6 / 5
	free, err := freeBytes(scratch)
	if err == nil && free-need < int64(c.SpareGB*1e9) {
		err = fmt.Errorf("a copy of %s needs about %.1f GB of the %.1f GB free", c.Source, float64(need)/1e9, float64(free)/1e9)
	}
	dir := filepath.Join(scratch, "source-copy")
	defer os.RemoveAll(dir)
	if err == nil {
		fmt.Fprintf(os.Stderr, "bench memory: copying %s for the all-layer request\n", c.Source)
		err = copyDataDir(c.Source, dir)
	}
	if err != nil {
		ms.Skipped = err.Error()
		fmt.Fprintln(os.Stderr, "bench memory: all-layer request skipped:", ms.Skipped)
		return ms
	}
	ms.DiskBytes = dirBytes(dir)
	c.measureDir(ctx, ms, dir, nil, 16, cold)
	if ms.Go != nil {
		ms.Tokens = ms.Go.Memory
		ms.DiskBytes = dirBytes(dir)
	}
	return ms
}

// measureDir runs the measuring process on dir, then numpy over the first layer's files.
func (c *BenchMemoryCommand) measureDir(ctx context.Context, ms *memSize, dir string, layers []string, tokens int, cold bool) {
	exe, err := os.Executable()
	if err != nil {
		ms.Skipped = err.Error()
		return
	}
	queries := filepath.Join(dir, "bench-queries.json")
	args := []string{"bench", "memory", "--measure", dir, "--measure-tokens", strconv.Itoa(tokens),
		"--measure-queries", queries, "--reps", strconv.Itoa(c.Reps), "--cold-reps", strconv.Itoa(c.measure.ColdReps), "--prompt", c.Prompt}
	if len(layers) > 0 {
		args = append(args, "--measure-layers", strings.Join(layers, ","))
	}
	if cold {
		args = append(args, "--measure-cold")
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = io.MultiWriter(&stderr, os.Stderr) // its progress lines, and the last for an error
	out, err := cmd.Output()
	if err != nil {
		ms.Skipped = fmt.Sprintf("measuring %s: %v: %s", dir, err, lastLine(stderr.String()))
		fmt.Fprintln(os.Stderr, "bench memory:", ms.Skipped)
		return
	}
	ms.Go = &memRun{}
	if err := json.Unmarshal(out, ms.Go); err != nil {
		ms.Skipped = fmt.Sprintf("measuring %s printed %q", dir, out)
		return
	}
	for _, l := range ms.Go.Cases[0].Read {
		ms.KeyBytes += l.BytesTotal
	}
	fmt.Fprintf(os.Stderr, "  go: %s\n", briefRun(ms.Go))
	if _, err := os.Stat(queries); c.Python == "off" || err != nil {
		return
	}
	ms.Numpy, err = c.runNumpy(ctx, filepath.Join(dir, dualmem.SegmentsDir), queries, cold)
	if err != nil {
		ms.NumpyErr = err.Error()
		fmt.Fprintln(os.Stderr, "bench memory: numpy:", err)
		return
	}
	fmt.Fprintf(os.Stderr, "  numpy: %s\n", ms.Numpy)
}

// runNumpy runs the embedded reference on two OpenBLAS threads.
func (c *BenchMemoryCommand) runNumpy(ctx context.Context, segments, queries string, cold bool) (json.RawMessage, error) {
	script := filepath.Join(filepath.Dir(segments), "scan_memmap.py")
	if err := os.WriteFile(script, bench.ScanMemmap, 0o644); err != nil {
		return nil, err
	}
	args := []string{script, segments, queries, "--reps", strconv.Itoa(c.Reps), "--cold-reps", strconv.Itoa(c.measure.ColdReps)}
	if cold {
		args = append(args, "--cold")
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.Python, args...)
	cmd.Env = append(os.Environ(), "OPENBLAS_NUM_THREADS=2")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", c.Python, err, lastLine(stderr.String()))
	}
	var probe map[string]any
	if json.Unmarshal(out, &probe) != nil {
		return nil, fmt.Errorf("%s printed %q, not its JSON line", c.Python, out)
	}
	return bytes.TrimSpace(out), nil
}

func briefRun(r *memRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d tokens, start-up %.1f s", r.Memory, r.StartupS)
	for _, mc := range r.Cases {
		fmt.Fprintf(&b, "; %s/%s %.0f ms", mc.Scan, mc.RankBy, mc.Warm.P50Ms)
		if mc.Cold != nil {
			fmt.Fprintf(&b, " (cold %.0f)", mc.Cold.P50Ms)
		}
	}
	return b.String()
}

// renderMemTable prints the table of a document written with --json.
func renderMemTable(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc memBench
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Print(memTable(doc))
	return nil
}
