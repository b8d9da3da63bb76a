package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Benchmarks"}
	cmd.AddCommand(newBenchTrainCmd())
	return cmd
}

// trainBench is the JSON document of `spotlight bench train --json`.
type trainBench struct {
	Preset          string           `json:"preset"`
	Backend         string           `json:"backend"`
	Results         []lm.BenchResult `json:"results"`
	CaptureOverhead float64          `json:"capture_overhead"` // 1 − capture/no-capture tokens/s (results 1 and 0)
	PyTorch         json.RawMessage  `json:"pytorch,omitempty"`
	VsPyTorch       float64          `json:"vs_pytorch,omitempty"` // no-capture tokens/s ÷ PyTorch's
}

func newBenchTrainCmd() *cobra.Command {
	var (
		preset, torchScript, profile string
		warmup, steps                int
		asJSON                       bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Training tokens/s with and without capture, next to the PyTorch reference, in one run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := lm.Preset(preset)
			if err != nil {
				return err
			}
			text := string(corpora.Default())
			if profile != "" {
				f, err := os.Create(profile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			doc := trainBench{Preset: preset, Backend: backendName()}
			for _, mode := range []string{"no-capture", "capture", "capture-discard"} {
				r, err := benchOnce(cfg, text, mode, warmup, steps)
				if err != nil {
					return err
				}
				doc.Results = append(doc.Results, r)
			}
			doc.CaptureOverhead = 1 - doc.Results[1].TokensPerSec/doc.Results[0].TokensPerSec
			if torchScript != "" {
				out, err := exec.Command("/usr/bin/python3", torchScript, "--d", strconv.Itoa(cfg.D),
					"--blocks", strconv.Itoa(cfg.Blocks), "--heads", strconv.Itoa(cfg.Heads), "--ctx", strconv.Itoa(cfg.Ctx),
					"--batch", strconv.Itoa(cfg.Batch), "--vocab", "91", "--steps", strconv.Itoa(steps)).Output()
				if err != nil {
					return fmt.Errorf("pytorch reference %s: %w", torchScript, err)
				}
				var ref struct {
					TokensPerSec float64 `json:"tokens_per_s"`
				}
				if err := json.Unmarshal(out, &ref); err != nil {
					return fmt.Errorf("pytorch reference printed %q: %w", out, err)
				}
				doc.PyTorch, doc.VsPyTorch = out, doc.Results[0].TokensPerSec/ref.TokensPerSec
			}
			if asJSON {
				return printJSON(doc)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "preset %s, backend %s\nrun\tms/step\ttokens/s\t\n", preset, doc.Backend)
			for _, r := range doc.Results {
				fmt.Fprintf(w, "%s\t%.1f\t%.0f\t\n", r.Name, r.MsPerStep, r.TokensPerSec)
			}
			_ = w.Flush()
			fmt.Printf("capture overhead: %.1f%%\n", 100*doc.CaptureOverhead)
			if doc.PyTorch != nil {
				fmt.Printf("pytorch: %s", doc.PyTorch)
				fmt.Printf("spotlight (no capture) / pytorch: %.3f×\n", doc.VsPyTorch)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&preset, "preset", "small", "model preset")
	cmd.Flags().IntVar(&warmup, "warmup", 3, "untimed steps first")
	cmd.Flags().IntVar(&steps, "steps", 50, "timed steps (the capture run ends with a durable commit; short runs overstate its cost)")
	cmd.Flags().StringVar(&torchScript, "torch", "", "path to torch_charlm.py to run as the reference in the same run")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	cmd.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile of the run (go tool pprof)")
	return cmd
}

// benchOnce times one configuration: no capture; capture into a real store in a temporary
// directory; or capture whose vectors are dropped (what the graph's extra outputs cost alone).
func benchOnce(cfg lm.Config, text, mode string, warmup, steps int) (lm.BenchResult, error) {
	tmp, err := os.MkdirTemp("", "spotlight-bench")
	if err != nil {
		return lm.BenchResult{}, err
	}
	defer os.RemoveAll(tmp)
	dir, tr, err := datadir.Create(filepath.Join(tmp, "d"), cfg, []byte(text))
	if err != nil {
		return lm.BenchResult{}, err
	}
	defer dir.Close()
	defer tr.Close()
	switch mode {
	case "no-capture":
		if err := tr.DisableCapture(); err != nil {
			return lm.BenchResult{}, err
		}
		return lm.BenchTrain(mode, tr, warmup, steps, nil)
	case "capture-discard":
		return lm.BenchTrain(mode, tr, warmup, steps, nil)
	}
	return lm.BenchTrain(mode, tr, warmup, steps, dir.Store)
}

func backendName() string {
	if b := os.Getenv("GOMLX_BACKEND"); b != "" {
		return b
	}
	return "go:parallelism=-1"
}
