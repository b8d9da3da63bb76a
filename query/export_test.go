package query

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Every token × layer × entry of a real answer comes back from the CSV and the JSONL with
// its values, in the answer's order (layers by name).
func TestExportRoundTrip(t *testing.T) {
	e := engine(t)
	ans, err := e.Generate(context.Background(), Request{Prompt: "The light\n", Tokens: 3, TopK: 4, Layers: []string{"out", "block0.ff1"}})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		token, layer string
		rank         int
		e            Entry
	}
	var wants []want
	for _, ta := range ans.Tokens {
		for _, layer := range []string{"block0.ff1", "out"} {
			for i, en := range ta.Layers[layer].Top {
				wants = append(wants, want{ta.Token, layer, i + 1, en})
			}
		}
	}
	if len(wants) != 3*2*4 {
		t.Fatalf("%d entries in the answer", len(wants))
	}

	var b bytes.Buffer
	if err := WriteCSV(&b, ans); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs[0], ExportColumns) || len(recs) != len(wants)+1 {
		t.Fatalf("header %v, %d rows", recs[0], len(recs))
	}
	col := map[string]int{}
	for i, c := range ExportColumns {
		col[c] = i
	}
	for i, w := range wants {
		r := recs[i+1]
		contribution, _ := strconv.ParseFloat(r[col["contribution"]], 64)
		if r[col["token"]] != w.token || r[col["layer"]] != w.layer || r[col["rank"]] != strconv.Itoa(w.rank) ||
			r[col["step"]] != strconv.Itoa(w.e.Step) || r[col["context"]] != w.e.Context || r[col["target"]] != w.e.Target ||
			r[col["checkpoint"]] != strconv.Itoa(ans.Step) || contribution != w.e.Contribution {
			t.Errorf("csv row %d: %q, want %+v", i, r, w)
		}
	}

	b.Reset()
	if err := WriteJSONL(&b, ans); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(wants) {
		t.Fatalf("%d JSON lines, want %d", len(lines), len(wants))
	}
	for i, w := range wants {
		var r struct {
			Layer, Token, Context, Target string
			Rank, Step, Row, Pos          int
			Offset                        int64
			Attention, Contribution, Prob float64
		}
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatal(err)
		}
		if r.Layer != w.layer || r.Token != w.token || r.Rank != w.rank || r.Step != w.e.Step || r.Row != w.e.Row ||
			r.Pos != w.e.Pos || r.Offset != w.e.Offset || r.Context != w.e.Context || r.Attention != w.e.Attention ||
			r.Contribution != w.e.Contribution {
			t.Errorf("jsonl line %d: %s, want %+v", i, lines[i], w)
		}
	}
}

// A layer with no entries still gives its token one row, with the entry columns empty.
func TestExportEmptyLayer(t *testing.T) {
	ans := &Answer{Step: 7, Tokens: []TokenAnswer{{Index: 0, Token: ",", Prob: 0.25,
		Layers: map[string]LayerAnswer{"out": {Objective: "logit"}}}}}
	var b bytes.Buffer
	if err := WriteCSV(&b, ans); err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(ExportColumns, ",") + "\n7,0,\",\",0.25,out,logit,,,,,,,,,\n"; b.String() != want {
		t.Errorf("csv %q, want %q", b.String(), want)
	}
	b.Reset()
	if err := WriteJSONL(&b, ans); err != nil {
		t.Fatal(err)
	}
	if want := `{"checkpoint":7,"token_index":0,"token":",","prob":0.25,"layer":"out","objective":"logit"}` + "\n"; b.String() != want {
		t.Errorf("jsonl %q, want %q", b.String(), want)
	}
}
