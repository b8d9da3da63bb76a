package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spotlight-lm/spotlight/bench/sweep"
)

// numpyDoc is the part of scan_memmap.py's document the table shows.
type numpyDoc struct {
	Runs map[string]struct {
		P50Ms    float64   `json:"p50_ms"`
		P50CPUMs float64   `json:"p50_cpu_ms"`
		Load1    []float64 `json:"load1"`
	} `json:"runs"`
	RSS struct {
		Anon int64 `json:"RssAnon"`
		File int64 `json:"RssFile"`
	} `json:"rss"`
	MaxRelDiff *float64 `json:"max_rel_diff_vs_go"`
}

// memTable is the sweep as one markdown table: per memory, a row per request shape and
// one for numpy's full scan of the same files.
func memTable(doc sweep.Doc) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| memory | request | p50 warm (CPU) | load | p50 cold (CPU) | load | read of keys+grads | blocks read | RssAnon | RssFile |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|\n")
	rows := func(label string, ms *sweep.Size, tokens int) {
		if ms.Skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s |||||||||\n", label, ms.Skipped)
			return
		}
		r := ms.Go
		label = fmt.Sprintf("%s, %.1f GB on disk", label, float64(ms.DiskBytes)/1e9)
		fmt.Fprintf(&b, "| %s | start-up | %.1f s |||||| %s | %s |\n", label, r.StartupS, mb(r.Startup.Anon), mb(r.Startup.File))
		fmt.Fprintf(&b, "| | model alone (generate + probe, %d tokens) | %s | %s |||||||\n", tokens, msCPU(r.Model.P50Ms, r.Model.P50CPUMs), loads(r.Model.Load1))
		for _, mc := range r.Cases {
			cold, coldLoad := "—", ""
			if mc.Cold != nil {
				cold, coldLoad = msCPU(mc.Cold.P50Ms, mc.Cold.P50CPUMs), loads(mc.Cold.Load1)
			}
			fmt.Fprintf(&b, "| | %d-token %s, %s, by %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", tokens,
				strings.Join(r.Layers, "+"), mc.Scan, mc.RankBy, msCPU(mc.Warm.P50Ms, mc.Warm.P50CPUMs), loads(mc.Warm.Load1),
				cold, coldLoad, readFrac(mc, r.Layers), blocksFrac(mc, r.Layers), mb(mc.RSS.Anon), mb(mc.RSS.File))
		}
		var np numpyDoc
		switch {
		case ms.NumpyErr != "":
			fmt.Fprintf(&b, "| | numpy: %s |||||||||\n", ms.NumpyErr)
		case ms.Numpy != nil && json.Unmarshal(ms.Numpy, &np) == nil:
			w, c := np.Runs["warm"], np.Runs["cold"]
			cold, coldLoad := "—", ""
			if c.P50Ms > 0 {
				cold, coldLoad = msCPU(c.P50Ms, c.P50CPUMs), loads(c.Load1)
			}
			check := ""
			if np.MaxRelDiff != nil {
				check = fmt.Sprintf(", totals within %.0e of Go's", *np.MaxRelDiff)
			}
			fmt.Fprintf(&b, "| | numpy/OpenBLAS (2 threads), np.memmap, %d-token out full scan%s | %s | %s | %s | %s | 100%% | | %s | %s |\n", tokens, check,
				msCPU(w.P50Ms, w.P50CPUMs), loads(w.Load1), cold, coldLoad, mb(np.RSS.Anon), mb(np.RSS.File))
		}
	}
	if doc.AllLayer != nil {
		label := "source, all layers"
		if doc.AllLayer.Go != nil {
			label = fmt.Sprintf("source, %s tokens per layer", count(doc.AllLayer.Tokens))
		}
		rows(label, doc.AllLayer, doc.AllTokens)
	}
	for i := range doc.Sizes {
		kind := "tiled"
		if doc.Sizes[i].Synthetic != "" {
			kind = "tiled, synthetic: segments only"
		}
		rows(fmt.Sprintf("%s %s tokens (%s)", doc.Layer, count(doc.Sizes[i].Tokens), kind), &doc.Sizes[i], doc.ReqTokens)
	}
	return b.String()
}

func msCPU(wall, cpu float64) string {
	if wall >= 1000 {
		return fmt.Sprintf("%.2f s (%.2f s)", wall/1e3, cpu/1e3)
	}
	return fmt.Sprintf("%.0f ms (%.0f ms)", wall, cpu)
}

// loads is the range of the 1-minute load averages the requests began at.
func loads(l []float64) string {
	if len(l) == 0 {
		return ""
	}
	lo, hi := slices.Min(l), slices.Max(l)
	if hi-lo < 0.05 {
		return fmt.Sprintf("%.1f", lo)
	}
	return fmt.Sprintf("%.1f–%.1f", lo, hi)
}

func readFrac(mc sweep.Case, layers []string) string {
	var parts []string
	for _, l := range layers {
		s := mc.Read[l]
		parts = append(parts, fmt.Sprintf("%.1f%%", 100*float64(s.BytesRead)/float64(max(s.BytesTotal, 1))))
	}
	return strings.Join(parts, ", ")
}

func blocksFrac(mc sweep.Case, layers []string) string {
	var parts []string
	for _, l := range layers {
		s := mc.Read[l]
		if s.BlocksTotal == 0 {
			return ""
		}
		parts = append(parts, fmt.Sprintf("%.1f%%", 100*float64(s.BlocksRead)/float64(s.BlocksTotal)))
	}
	return strings.Join(parts, ", ")
}

func mb(n int64) string { return fmt.Sprintf("%d MB", n>>20) }

func count(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.3gM", float64(n)/1e6)
	case n >= 1000:
		return fmt.Sprintf("%.3gK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
