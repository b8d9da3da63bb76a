package datadir

import (
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// LayerStats is one captured layer's memory size.
type LayerStats struct {
	Name    string `json:"name"`
	DIn     int    `json:"d_in"`
	DOut    int    `json:"d_out"`
	Entries int    `json:"entries"` // training tokens recorded
	Bytes   int64  `json:"bytes"`
}

// Stats summarises a data directory.
type Stats struct {
	Config   lm.Config `json:"config"`
	Step     int       `json:"step"`
	LastLoss float32   `json:"last_loss"`
	EvalLoss float64   `json:"eval_loss"`
	// SplitLoss is the mean loss over the whole held-out split (SplitTokens tokens), the
	// steadier figure for comparing runs; nil where it was not computed (through a server).
	SplitLoss   *float64     `json:"split_loss,omitempty"`
	SplitTokens int          `json:"split_tokens,omitempty"`
	Precision   string       `json:"precision"`
	Layers      []LayerStats `json:"layers"`
	DiskBytes   int64        `json:"disk_bytes"`
	// Kept are the checkpoints kept for retraining (GET /v1/counterfactual starts from
	// them), KeptBytes what they take.
	Kept      []KeptCheckpoint `json:"kept_checkpoints"`
	KeptBytes int64            `json:"kept_checkpoint_bytes"`
}

// Stats reads sizes from the store and evaluates the held-out loss of the last checkpoint.
func (d *Dir) Stats() (*Stats, error) {
	infos, err := d.Store.StepInfos()
	if err != nil {
		return nil, err
	}
	st := &Stats{Config: d.Cfg, Step: len(infos), Precision: string(d.Store.Meta().Precision)}
	if len(infos) > 0 {
		st.LastLoss = infos[len(infos)-1].Loss
	}
	if st.Layers, st.DiskBytes, err = d.layerStats(infos); err != nil {
		return nil, err
	}
	if st.Kept, err = d.Store.KeptCheckpoints(); err != nil {
		return nil, err
	}
	for _, k := range st.Kept {
		st.KeptBytes += k.Bytes
	}
	m, err := d.Model()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	text := string(d.Store.Corpus())
	if st.EvalLoss, err = m.EvalLoss(text); err != nil {
		return nil, err
	}
	split, n, err := m.SplitLoss(text)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		st.SplitLoss, st.SplitTokens = &split, n
	}
	return st, nil
}

// LayerStats is every captured layer's memory as of the first steps committed steps (the
// byte counts are those of the whole store), and the data directory's size on disk.
func (d *Dir) LayerStats(steps int) (layers []LayerStats, diskBytes int64, err error) {
	infos, err := d.Store.StepInfos()
	if err != nil {
		return nil, 0, err
	}
	return d.layerStats(infos[:min(max(steps, 0), len(infos))])
}

func (d *Dir) layerStats(infos []lm.StepInfo) ([]LayerStats, int64, error) {
	sizes, err := d.Store.Sizes()
	if err != nil {
		return nil, 0, err
	}
	entries := 0
	for _, in := range infos {
		entries += in.Tokens()
	}
	layers := []LayerStats{}
	for _, l := range d.Store.Meta().Layers {
		layers = append(layers, LayerStats{Name: l.Name, DIn: l.DIn, DOut: l.DOut, Entries: entries, Bytes: sizes[l.Name]})
	}
	return layers, sizes[dualmem.SizeDisk], nil
}

// LossPoint is the mean training loss of a span of steps ending at Step.
type LossPoint struct {
	Step int     `json:"step"`
	Loss float64 `json:"loss"`
}

// LossCurve averages the committed steps' training losses into at most maxPoints points.
func (d *Dir) LossCurve(maxPoints int) ([]LossPoint, error) {
	infos, err := d.Store.StepInfos()
	if err != nil {
		return nil, err
	}
	return lossCurve(infos, maxPoints), nil
}

func lossCurve(infos []lm.StepInfo, maxPoints int) []LossPoint {
	per := (len(infos) + maxPoints - 1) / maxPoints
	points := []LossPoint{}
	for lo := 0; lo < len(infos); lo += per {
		hi := min(lo+per, len(infos))
		var sum float64
		for _, in := range infos[lo:hi] {
			sum += float64(in.Loss)
		}
		points = append(points, LossPoint{Step: infos[hi-1].Step, Loss: sum / float64(hi-lo)})
	}
	return points
}
