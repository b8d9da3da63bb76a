// Package sweep is the size sweep of `spotlight bench memory`: it builds, per size, a data
// directory by tiling one layer of a trained memory on disk, and measures the same requests
// on each in a child process that opens it as serve does, beside numpy over the same files.
package sweep

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

	"github.com/spotlight-lm/spotlight/bench"
	"github.com/spotlight-lm/spotlight/dualmem"
)

// Config is one sweep; the fields are the flags of `spotlight bench memory`.
type Config struct {
	Source       string // a trained data directory (only read)
	Layer        string
	Sizes        string // comma-separated token counts, with K or M suffixes
	Scratch      string // where the tiled directories are built (each removed after)
	Reps         int
	ColdReps     int    // 0: as Reps
	Cold         string // auto (when root), on, off
	SegmentsOnly string // auto (a size whose store-path build would not fit), on, off
	AllLayer     bool   // also the all-layer request on a copy of the source
	Prompt       string
	Python       string // "off" skips numpy
	SpareGB      float64
	// Child is the measuring process's command line without its flags: a program that
	// takes the flags childArgs writes and prints its Measurement as JSON.
	Child []string
}

// Doc is the JSON document of a sweep.
type Doc struct {
	Source     string    `json:"source"`
	Layer      string    `json:"layer"`
	CPUs       int       `json:"cpus"`
	Reps       int       `json:"reps"`
	Started    time.Time `json:"started"`
	Sizes      []Size    `json:"sizes"`
	AllLayer   *Size     `json:"all_layer,omitempty"`
	ReqTokens  int       `json:"request_tokens"`
	AllTokens  int       `json:"all_layer_request_tokens"`
	ScratchDir string    `json:"scratch"`
}

// Size is one memory of the sweep.
type Size struct {
	Tokens    int             `json:"tokens"`
	Skipped   string          `json:"skipped,omitempty"`
	Synthetic string          `json:"synthetic,omitempty"` // how it differs from what training writes; "" when it does not
	BuildS    float64         `json:"build_s,omitempty"`
	DiskBytes int64           `json:"disk_bytes,omitempty"`
	KeyBytes  int64           `json:"key_grad_bytes,omitempty"` // keys and gradients of the layer(s) in the segments
	Go        *Measurement    `json:"go,omitempty"`
	Numpy     json.RawMessage `json:"numpy,omitempty"`
	NumpyErr  string          `json:"numpy_error,omitempty"`
}

// segmentsOnlyNote is the Synthetic of a segments-only size.
const segmentsOnlyNote = "segments-only: keys and gradients in the segment files alone, the database holds the steps' headers, token arrays and commits"

// ParseSizes reads "1M,4M,200K,5000".
func ParseSizes(s string) ([]int, error) {
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

// check is the validation of the flags, before anything is read or built.
func (c *Config) check() (sizes []int, cold bool, err error) {
	if c.Source == "" {
		return nil, false, fmt.Errorf("--source is required: a trained data directory")
	}
	if sizes, err = ParseSizes(c.Sizes); err != nil {
		return nil, false, err
	}
	if len(sizes) == 0 && !c.AllLayer {
		return nil, false, fmt.Errorf("nothing to measure: give --sizes, --all-layer or both")
	}
	if c.Reps < 1 || c.ColdReps < 0 {
		return nil, false, fmt.Errorf("--reps %d, --cold-reps %d: want at least 1 (--cold-reps 0 means as --reps)", c.Reps, c.ColdReps)
	}
	for _, f := range []struct{ name, v string }{{"--cold", c.Cold}, {"--segments-only", c.SegmentsOnly}} {
		if f.v != "on" && f.v != "off" && f.v != "auto" {
			return nil, false, fmt.Errorf("%s %q: want on, off or auto", f.name, f.v)
		}
	}
	if len(c.Child) == 0 {
		return nil, false, fmt.Errorf("no measuring process given")
	}
	return sizes, c.Cold == "on" || (c.Cold == "auto" && os.Geteuid() == 0), nil
}

// Run builds, measures and removes each size in turn and returns the document.
func (c *Config) Run(ctx context.Context) (*Doc, error) {
	sizes, cold, err := c.check()
	if err != nil {
		return nil, err
	}
	if c.ColdReps == 0 {
		c.ColdReps = c.Reps
	}
	store, err := dualmem.OpenReadOnly(c.Source)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	src, err := OpenTileSource(store, c.Layer)
	if err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(c.Scratch, "spotlight-sweep-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	doc := &Doc{Source: c.Source, Layer: c.Layer, CPUs: runtime.NumCPU(), Reps: c.Reps, Started: time.Now().UTC(),
		ReqTokens: 32, AllTokens: 16, ScratchDir: scratch}
	if c.AllLayer {
		doc.AllLayer = c.allLayer(ctx, scratch, cold)
	}
	for _, n := range sizes {
		doc.Sizes = append(doc.Sizes, c.size(ctx, src, scratch, n, cold))
	}
	return doc, nil
}

// size builds the tiled memory of n tokens, measures it and numpy on it, and removes it.
func (c *Config) size(ctx context.Context, src *TileSource, scratch string, n int, cold bool) Size {
	ms := Size{Tokens: n}
	spare := int64(c.SpareGB * 1e9)
	free, err := dualmem.FreeBytes(scratch)
	segOnly := c.SegmentsOnly == "on" || (c.SegmentsOnly == "auto" && free-tileBytes(src.meta, n, false) < spare)
	need := tileBytes(src.meta, n, segOnly)
	if err == nil && free-need < spare {
		err = fmt.Errorf("needs about %.1f GB of the %.1f GB free, leaving less than --spare-gb %g", float64(need)/1e9, float64(free)/1e9, c.SpareGB)
	}
	if err != nil {
		ms.Skipped = err.Error()
		fmt.Fprintf(os.Stderr, "bench memory: %d tokens skipped: %s\n", n, ms.Skipped)
		return ms
	}
	if segOnly {
		ms.Synthetic = segmentsOnlyNote
	}
	dir := filepath.Join(scratch, fmt.Sprintf("%s-%d", c.Layer, n))
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "bench memory: building %d tokens of %q in %s (%s)\n", n, c.Layer, dir, map[bool]string{true: "segments only", false: "store path"}[segOnly])
	t0 := time.Now()
	if _, err := BuildTiled(ctx, src, dir, n, segOnly, func(done, total int) {
		fmt.Fprintf(os.Stderr, "\r  %d/%d tokens", done, total)
	}); err != nil {
		ms.Skipped = "build: " + err.Error()
		return ms
	}
	ms.BuildS = time.Since(t0).Seconds()
	ms.DiskBytes, _ = dualmem.DiskUsage(dir)
	fmt.Fprintf(os.Stderr, "\n  built in %.0f s, %.2f GB on disk\n", ms.BuildS, float64(ms.DiskBytes)/1e9)
	c.measureDir(ctx, &ms, dir, []string{c.Layer}, 32, cold)
	if ms.Go != nil && ms.Go.SegmentsOnly != segOnly {
		ms.Skipped = fmt.Sprintf("%s: built segments-only %v, measured as %v", dir, segOnly, ms.Go.SegmentsOnly)
	}
	return ms
}

// allLayer times the all-layer request on a copy of the source (the copy's first open
// builds its aggregates and bounds, which the source may lack and must not be given).
func (c *Config) allLayer(ctx context.Context, scratch string, cold bool) *Size {
	ms := &Size{}
	used, err := dualmem.DiskUsage(c.Source)
	need := used * 6 / 5
	var free int64
	if err == nil {
		free, err = dualmem.FreeBytes(scratch)
	}
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
	ms.DiskBytes, _ = dualmem.DiskUsage(dir)
	c.measureDir(ctx, ms, dir, nil, 16, cold)
	if ms.Go != nil {
		ms.Tokens = ms.Go.Memory
		ms.DiskBytes, _ = dualmem.DiskUsage(dir)
	}
	return ms
}

// childArgs are the measuring process's flags for o.
func childArgs(o MeasureOpts) []string {
	args := []string{"--measure", o.Dir, "--measure-tokens", strconv.Itoa(o.Tokens), "--measure-queries", o.Queries,
		"--reps", strconv.Itoa(o.Reps), "--cold-reps", strconv.Itoa(o.ColdReps), "--prompt", o.Prompt}
	if len(o.Layers) > 0 {
		args = append(args, "--measure-layers", strings.Join(o.Layers, ","))
	}
	if o.Cold {
		args = append(args, "--measure-cold")
	}
	return args
}

// measureDir runs the measuring process on dir, then numpy over the first layer's files.
func (c *Config) measureDir(ctx context.Context, ms *Size, dir string, layers []string, tokens int, cold bool) {
	queries := filepath.Join(dir, "bench-queries.json")
	args := childArgs(MeasureOpts{Dir: dir, Prompt: c.Prompt, Queries: queries, Layers: layers, Tokens: tokens,
		Reps: c.Reps, ColdReps: c.ColdReps, Cold: cold})
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.Child[0], append(c.Child[1:len(c.Child):len(c.Child)], args...)...)
	cmd.Stderr = io.MultiWriter(&stderr, os.Stderr) // its progress lines, and the last for an error
	out, err := cmd.Output()
	if err != nil {
		ms.Skipped = fmt.Sprintf("measuring %s: %v: %s", dir, err, lastLine(stderr.String()))
		fmt.Fprintln(os.Stderr, "bench memory:", ms.Skipped)
		return
	}
	ms.Go = &Measurement{}
	if err := json.Unmarshal(out, ms.Go); err != nil || len(ms.Go.Cases) == 0 {
		ms.Go, ms.Skipped = nil, fmt.Sprintf("measuring %s printed %q", dir, out)
		return
	}
	for _, l := range ms.Go.Cases[0].Read {
		ms.KeyBytes += l.BytesTotal
	}
	fmt.Fprintf(os.Stderr, "  go: %s\n", brief(ms.Go))
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
func (c *Config) runNumpy(ctx context.Context, segments, queries string, cold bool) (json.RawMessage, error) {
	script := filepath.Join(filepath.Dir(segments), "scan_memmap.py")
	if err := os.WriteFile(script, bench.ScanMemmap, 0o644); err != nil {
		return nil, err
	}
	args := []string{script, segments, queries, "--reps", strconv.Itoa(c.Reps), "--cold-reps", strconv.Itoa(c.ColdReps)}
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

// lastLine is a child's last line of output, where its error is.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func brief(r *Measurement) string {
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
