package sweep

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// The measuring side of the sweep: one process per memory, so that its RSS is that
// memory's alone and its mappings go when it exits (the files are deleted after).

// Measurement is what one measuring process found on one data directory.
type Measurement struct {
	Dir    string   `json:"dir"`
	Layers []string `json:"layers"`
	Tokens int      `json:"request_tokens"`
	Memory int      `json:"memory_tokens"` // training tokens per layer
	Steps  int      `json:"memory_steps"`
	// SegmentsOnly: the directory is a synthetic segments-only memory (dualmem.Meta.SegmentsOnly).
	SegmentsOnly bool    `json:"segments_only,omitempty"`
	StartupS     float64 `json:"startup_s"` // open, model, engine, hidden layers' dual weights
	Startup      RSS     `json:"rss_after_startup"`
	Model        Timings `json:"model"` // generate + probe alone: the part of a request that is not the memory
	Cases        []Case  `json:"cases"`
}

// Case is one request shape, timed warm and, with --cold, with the page cache dropped.
type Case struct {
	Scan   string                       `json:"scan"`
	RankBy string                       `json:"rank_by"`
	Warm   Timings                      `json:"warm"`
	Cold   *Timings                     `json:"cold,omitempty"`
	Read   map[string]dualmem.ScanStats `json:"read"` // per layer, of the last request
	RSS    RSS                          `json:"rss_after"`
}

// Timings are the requests after one warm-up: wall and CPU time of each, the 1-minute load
// average as each began, and their medians.
type Timings struct {
	P50Ms    float64   `json:"p50_ms"`
	P50CPUMs float64   `json:"p50_cpu_ms"`
	WallMs   []float64 `json:"wall_ms"`
	CPUMs    []float64 `json:"cpu_ms"`
	Load1    []float64 `json:"load1"`
}

// RSS is a process's resident memory, in bytes.
type RSS struct {
	Anon int64 `json:"rss_anon"`
	File int64 `json:"rss_file"`
}

// MeasureOpts are the measuring process's flags (see childArgs).
type MeasureOpts struct {
	Dir, Prompt, Queries string
	Layers               []string
	Tokens, Reps         int
	ColdReps             int
	Cold                 bool
	Seed                 uint64
	StartupOnly          bool // stop after start-up: its time and RSS, no request
}

// Measure opens o.Dir through the normal read path (the store maps its segment files),
// builds a query engine as serve does and times the request shapes.
func Measure(ctx context.Context, o MeasureOpts) (*Measurement, error) {
	t0 := time.Now()
	store, err := dualmem.Open(o.Dir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	_, ckpt, err := store.Checkpoint()
	if err != nil {
		return nil, err
	}
	model, err := lm.LoadModel(ckpt)
	if err != nil {
		return nil, err
	}
	defer model.Close()
	// A tiled memory holds more steps than the checkpoint was trained on: the engine reads
	// every committed step (its answers' dual checks then do not hold; the work is the same).
	model.Step = store.Steps()
	e, err := query.NewEngine(model, store, nil)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	layers := o.Layers
	if len(layers) == 0 {
		for _, l := range store.Meta().Layers {
			layers = append(layers, l.Name)
		}
	}
	for _, l := range layers {
		sc := e.Scanner(l)
		if sc == nil {
			return nil, fmt.Errorf("layer %q has no memory in %s", l, o.Dir)
		}
		sc.Warm()
		if err := sc.HasAggregates(); err != nil {
			return nil, fmt.Errorf("%s: pruned requests would fall back to a full scan: %w", o.Dir, err)
		}
	}
	sc0 := e.Scanner(layers[0])
	run := &Measurement{Dir: o.Dir, Layers: layers, Tokens: o.Tokens, Memory: sc0.N, Steps: len(sc0.Mem.Steps),
		StartupS: time.Since(t0).Seconds(), Startup: readRSS(), SegmentsOnly: store.Meta().SegmentsOnly}
	if o.StartupOnly {
		return run, nil
	}
	temp := query.DefaultTemperature
	base := query.Request{Prompt: o.Prompt, Tokens: o.Tokens, TopK: 10, GroupBy: query.GroupToken,
		Layers: layers, Temperature: &temp, Seed: o.Seed}
	var fullAnswer *query.Answer
	for _, c := range []struct{ scan, rank string }{
		{query.ScanFull, query.RankContribution}, {query.ScanFull, query.RankAttention},
		{query.ScanPruned, query.RankContribution}, {query.ScanPruned, query.RankAttention},
	} {
		req := base
		req.Scan, req.RankBy = c.scan, c.rank
		var last *query.Answer
		do := func() error {
			a, err := e.Generate(ctx, req)
			last = a
			return err
		}
		mc := Case{Scan: c.scan, RankBy: c.rank}
		if mc.Warm, err = timeRequests(o.Reps, false, do); err != nil {
			return nil, err
		}
		if o.Cold {
			cold, err := timeRequests(o.ColdReps, true, do)
			if err != nil {
				return nil, err
			}
			mc.Cold = &cold
		}
		mc.Read = map[string]dualmem.ScanStats{}
		for name, la := range last.Tokens[0].Layers {
			if la.Scan.Mode != c.scan {
				return nil, fmt.Errorf("layer %q answered a %s request in %s mode", name, c.scan, la.Scan.Mode)
			}
			mc.Read[name] = la.Scan.ScanStats
		}
		mc.RSS = readRSS()
		fmt.Fprintf(os.Stderr, "  %s/%s: p50 %.0f ms (CPU %.0f ms)\n", c.scan, c.rank, mc.Warm.P50Ms, mc.Warm.P50CPUMs)
		run.Cases = append(run.Cases, mc)
		if c.scan == query.ScanFull && c.rank == query.RankContribution {
			fullAnswer = last
		}
	}
	if run.Model, err = timeModel(model, base, fullAnswer, o.Reps); err != nil {
		return nil, err
	}
	if o.Queries != "" && slices.Contains(layers, "out") {
		if err := writeQueries(o.Queries, e, "out", model, base, fullAnswer); err != nil {
			return nil, err
		}
	}
	return run, nil
}

// timeRequests runs do once untimed, then reps times, dropping the page cache before each
// when cold.
func timeRequests(reps int, cold bool, do func() error) (Timings, error) {
	var t Timings
	if !cold {
		if err := do(); err != nil {
			return t, err
		}
	}
	for range reps {
		if cold {
			if err := dropCaches(); err != nil {
				return t, err
			}
		}
		t.Load1 = append(t.Load1, load1())
		c0, w0 := lm.ProcessCPU(), time.Now()
		if err := do(); err != nil {
			return t, err
		}
		t.WallMs = append(t.WallMs, float64(time.Since(w0).Microseconds())/1e3)
		t.CPUMs = append(t.CPUMs, float64((lm.ProcessCPU()-c0).Microseconds())/1e3)
	}
	t.P50Ms, t.P50CPUMs = median(t.WallMs), median(t.CPUMs)
	return t, nil
}

// timeModel times what a request asks of the model alone: the generation and one probe
// of every generated token's context.
func timeModel(m *lm.Model, req query.Request, a *query.Answer, reps int) (Timings, error) {
	prompt, contexts, targets, err := requestContexts(m, req, a)
	if err != nil {
		return Timings{}, err
	}
	return timeRequests(reps, false, func() error {
		if _, err := m.Generate(prompt, req.Tokens, *req.Temperature, req.Seed); err != nil {
			return err
		}
		_, err := m.Probe(contexts, targets)
		return err
	})
}

// requestContexts are the prompt's ids and, per generated token of a, its context and id.
func requestContexts(m *lm.Model, req query.Request, a *query.Answer) (prompt []int32, contexts [][]int32, targets []int32, err error) {
	if prompt, err = m.Tok.Encode(req.Prompt); err != nil {
		return nil, nil, nil, err
	}
	gen, err := m.Tok.Encode(a.Text)
	if err != nil {
		return nil, nil, nil, err
	}
	seq := append(slices.Clone(prompt), gen...)
	for i := range gen {
		contexts = append(contexts, seq[:len(prompt)+i])
	}
	return prompt, contexts, gen, nil
}

// writeQueries writes the full contribution request's queries of layer (out, an exact
// layer: the query is its input, the projection the generated token) with the per-step scales and
// the answer's contribution totals, for the numpy reference to scan the same way.
func writeQueries(path string, e *query.Engine, layer string, m *lm.Model, req query.Request, a *query.Answer) error {
	_, contexts, targets, err := requestContexts(m, req, a)
	if err != nil {
		return err
	}
	probes, err := m.Probe(contexts, targets)
	if err != nil {
		return err
	}
	sc := e.Scanner(layer)
	doc := struct {
		Layer  string    `json:"layer"`
		DIn    int       `json:"d_in"`
		DOut   int       `json:"d_out"`
		N      int       `json:"tokens"`
		X      []float32 `json:"x"`
		Tok    []int32   `json:"tokens_id"`
		SW     []float64 `json:"sw"`
		First  int       `json:"first_step"`
		GoSums []float64 `json:"go_contribution_total"`
	}{Layer: layer, DIn: sc.DIn, DOut: sc.DOut, N: sc.N, Tok: targets, SW: sc.SW, First: sc.Mem.Steps[0].Step}
	for i, p := range probes {
		doc.X = append(doc.X, p.Layers[layer].X...)
		la := a.Tokens[i].Layers[layer]
		if la.PositiveTotal == nil || la.NegativeTotal == nil {
			return fmt.Errorf("layer %q: the full answer has no totals", layer)
		}
		doc.GoSums = append(doc.GoSums, *la.PositiveTotal+*la.NegativeTotal)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// readRSS reads the process's anonymous and file-backed resident memory.
func readRSS() RSS {
	var r RSS
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return r
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "RssAnon":
			r.Anon = kb << 10
		case "RssFile":
			r.File = kb << 10
		}
	}
	return r
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	x, _ := strconv.ParseFloat(f[0], 64)
	return x
}

// dropCaches writes the dirty pages out and drops the page cache (root only).
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("dropping the page cache (--cold needs root): %w", err)
	}
	return nil
}
