package query

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"slices"
	"strconv"
)

// ExportColumns are the columns of WriteCSV and the keys of WriteJSONL, in order: one row
// per generated token × layer × top entry. A token whose layer lists no entry still gets
// one row, with the entry columns empty (CSV) or absent (JSONL).
// The entry columns keep the names of Entry's JSON fields (step is the training step the
// entry was seen at); checkpoint is the answer's step, the model and memory it saw.
var ExportColumns = []string{"checkpoint", "token_index", "token", "prob", "layer", "objective", "rank",
	"step", "row", "pos", "offset", "context", "target", "attention", "contribution"}

// exportRow is one row; the entry fields are nil on a layer without entries.
type exportRow struct {
	Checkpoint   int      `json:"checkpoint"`
	TokenIndex   int      `json:"token_index"`
	Token        string   `json:"token"`
	Prob         float64  `json:"prob"`
	Layer        string   `json:"layer"`
	Objective    string   `json:"objective"`
	Rank         *int     `json:"rank,omitempty"` // 1 = the entry listed first
	Step         *int     `json:"step,omitempty"`
	Row          *int     `json:"row,omitempty"`
	Pos          *int     `json:"pos,omitempty"`
	Offset       *int64   `json:"offset,omitempty"`
	Context      *string  `json:"context,omitempty"`
	Target       *string  `json:"target,omitempty"`
	Attention    *float64 `json:"attention,omitempty"`
	Contribution *float64 `json:"contribution,omitempty"`
}

// rows flattens a into export rows: tokens in order, layers sorted by name, entries in the
// answer's order.
func rows(a *Answer, emit func(exportRow) error) error {
	for _, t := range a.Tokens {
		layers := make([]string, 0, len(t.Layers))
		for name := range t.Layers {
			layers = append(layers, name)
		}
		slices.Sort(layers)
		for _, name := range layers {
			la := t.Layers[name]
			base := exportRow{Checkpoint: a.Step, TokenIndex: t.Index, Token: t.Token, Prob: t.Prob, Layer: name, Objective: la.Objective}
			if len(la.Top) == 0 {
				if err := emit(base); err != nil {
					return err
				}
			}
			for i, e := range la.Top {
				r := base
				rank := i + 1
				r.Rank, r.Step, r.Row, r.Pos, r.Offset = &rank, &e.Step, &e.Row, &e.Pos, &e.Offset
				r.Context, r.Target, r.Attention, r.Contribution = &e.Context, &e.Target, &e.Attention, &e.Contribution
				if err := emit(r); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// WriteJSONL writes a as JSON Lines: one object per row, keys as ExportColumns.
func WriteJSONL(w io.Writer, a *Answer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return rows(a, func(r exportRow) error { return enc.Encode(r) })
}

// WriteCSV writes a as RFC 4180 CSV with a header row of ExportColumns. Floats are written
// in the shortest form that reads back to the same value.
func WriteCSV(w io.Writer, a *Answer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ExportColumns); err != nil {
		return err
	}
	err := rows(a, func(r exportRow) error {
		return cw.Write([]string{strconv.Itoa(r.Checkpoint), strconv.Itoa(r.TokenIndex), r.Token, float(r.Prob), r.Layer, r.Objective,
			optInt(r.Rank), optInt(r.Step), optInt(r.Row), optInt(r.Pos), optInt64(r.Offset), optStr(r.Context),
			optStr(r.Target), optFloat(r.Attention), optFloat(r.Contribution)})
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

func float(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func optInt(v *int) string {
	if v == nil {
		return ""
	}
	return strconv.Itoa(*v)
}

func optInt64(v *int64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatInt(*v, 10)
}

func optStr(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}

func optFloat(v *float64) string {
	if v == nil {
		return ""
	}
	return float(*v)
}
