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
	Config    lm.Config    `json:"config"`
	Step      int          `json:"step"`
	LastLoss  float32      `json:"last_loss"`
	EvalLoss  float64      `json:"eval_loss"`
	Precision string       `json:"precision"`
	Layers    []LayerStats `json:"layers"`
	DiskBytes int64        `json:"disk_bytes"`
}

// Stats reads sizes from the store and evaluates the held-out loss of the last checkpoint.
func (d *Dir) Stats() (*Stats, error) {
	infos, err := d.Store.StepInfos()
	if err != nil {
		return nil, err
	}
	sizes, err := d.Store.Sizes()
	if err != nil {
		return nil, err
	}
	st := &Stats{Config: d.Cfg, Step: len(infos), Precision: string(d.Store.Meta().Precision)}
	entries := 0
	for _, in := range infos {
		entries += in.Tokens()
	}
	if len(infos) > 0 {
		st.LastLoss = infos[len(infos)-1].Loss
	}
	for _, l := range d.Store.Meta().Layers {
		st.Layers = append(st.Layers, LayerStats{Name: l.Name, DIn: l.DIn, DOut: l.DOut, Entries: entries, Bytes: sizes[l.Name]})
	}
	st.DiskBytes = sizes[dualmem.SizeDisk]
	m, err := d.Model()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	st.EvalLoss, err = m.EvalLoss(string(d.Store.Corpus()))
	return st, err
}
