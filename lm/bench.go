package lm

import (
	"fmt"
	"time"
)

// BenchResult is the measured training speed of one configuration.
type BenchResult struct {
	Name         string  `json:"name"`
	Steps        int     `json:"steps"`
	MsPerStep    float64 `json:"ms_per_step"`
	TokensPerSec float64 `json:"tokens_per_s"`
	// CPUMsPerStep is the process's CPU time (user and system, all threads) per step: what a
	// configuration costs even when other jobs share the cores. Zero where not measured.
	CPUMsPerStep float64 `json:"cpu_ms_per_step,omitempty"`
	// SysMsPerStep is the system (kernel) part of it, and MinorFaultsPerStep the page faults
	// served without reading the disk: where a store's writes cost the process.
	SysMsPerStep       float64 `json:"sys_ms_per_step,omitempty"`
	MinorFaultsPerStep float64 `json:"minor_faults_per_step,omitempty"`
}

// Usage is what a process has used: CPU time (user and system), the system part, and the
// page faults served without reading the disk. Zero where not measured.
type Usage struct {
	CPU, Sys    time.Duration
	MinorFaults int64
}

// ProcessCPU is the CPU time the process has used, user and system, all threads (zero
// where not measured).
func ProcessCPU() time.Duration { return ProcessUsage().CPU }

func (u Usage) sub(v Usage) Usage {
	return Usage{CPU: u.CPU - v.CPU, Sys: u.Sys - v.Sys, MinorFaults: u.MinorFaults - v.MinorFaults}
}

func (u Usage) add(v Usage) Usage {
	return Usage{CPU: u.CPU + v.CPU, Sys: u.Sys + v.Sys, MinorFaults: u.MinorFaults + v.MinorFaults}
}

// DisableCapture recompiles the train step to capture nothing: the baseline that capture's
// overhead is measured against.
func (t *Trainer) DisableCapture() error {
	ex, err := newExecs(t.Cfg, nil)
	if err != nil {
		return err
	}
	t.ex.finalize()
	t.ex = ex
	return nil
}

// BenchRun is one configuration to time: a trainer and where its captures go (nil: dropped).
type BenchRun struct {
	Name    string
	Trainer *Trainer
	Memory  Memory
}

// Bench times `steps` optimizer steps of each run after `warmup` untimed ones. The runs take
// turns, `round` steps each, so that load from other jobs, which comes and goes, weighs on
// all of them alike. A run with a Memory commits as Train does (every CheckpointEvery steps
// and at its last step, durably) and waits for its store at the end of each turn, so what it
// writes is timed in its own turns.
func Bench(runs []BenchRun, warmup, steps, round int) ([]BenchResult, error) {
	if round <= 0 {
		return nil, fmt.Errorf("bench: round of %d steps", round)
	}
	res := make([]BenchResult, len(runs))
	wall := make([]time.Duration, len(runs))
	use := make([]Usage, len(runs))
	for i, r := range runs {
		res[i].Name = r.Name
		if err := benchSteps(r, warmup, 0); err != nil {
			return nil, err
		}
	}
	for done := 0; done < steps; done += round {
		n := min(round, steps-done)
		for i, r := range runs {
			w0, u0 := time.Now(), ProcessUsage()
			if err := benchSteps(r, n, warmup+steps); err != nil {
				return nil, err
			}
			wall[i] += time.Since(w0)
			use[i] = use[i].add(ProcessUsage().sub(u0))
		}
	}
	for i, r := range runs {
		c := r.Trainer.Cfg
		dt := wall[i].Seconds() / float64(steps)
		res[i].Steps, res[i].MsPerStep = steps, 1000*dt
		res[i].TokensPerSec = float64(c.Batch*c.Ctx) / dt
		if u := use[i]; u.CPU > 0 {
			res[i].CPUMsPerStep = 1000 * u.CPU.Seconds() / float64(steps)
			res[i].SysMsPerStep = 1000 * u.Sys.Seconds() / float64(steps)
			res[i].MinorFaultsPerStep = float64(u.MinorFaults) / float64(steps)
		}
	}
	return res, nil
}

// benchSteps runs n steps of r, committing at checkpoints and at step last; with a store, it
// returns once the store has written them.
func benchSteps(r BenchRun, n, last int) error {
	tr := r.Trainer
	for range n {
		st, err := tr.TrainStep(tr.BatchAt(tr.Step + 1))
		if err != nil {
			return err
		}
		if r.Memory == nil {
			st.Release()
			continue
		}
		if err := r.Memory.AppendStep(st); err != nil {
			return err
		}
		if tr.Step%tr.Cfg.CheckpointEvery == 0 || tr.Step == last {
			if err := r.Memory.Commit(tr.Step, nil); err != nil {
				return fmt.Errorf("bench commit: %w", err)
			}
		}
	}
	if f, ok := r.Memory.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}
