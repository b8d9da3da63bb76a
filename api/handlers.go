package api

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

//go:embed openapi.json
var openAPIDoc []byte

func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openAPIDoc)
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"status": "ok", "step": s.currentStep()})
}

// ModelInfo is the body of GET /v1/model.
type ModelInfo struct {
	Step        int                  `json:"step"` // the checkpoint queries see now
	Config      lm.Config            `json:"config"`
	Vocabulary  []string             `json:"vocabulary"`
	Layers      []datadir.LayerStats `json:"layers"`
	MemoryBytes int64                `json:"memory_bytes"` // the data directory on disk
	Training    TrainStatus          `json:"training"`
}

func (s *Server) getModel(c echo.Context) error {
	sn := s.acquire()
	defer s.release(sn)
	infos, err := s.dir.Store.StepInfos()
	if err != nil {
		return err
	}
	sizes, err := s.dir.Store.Sizes()
	if err != nil {
		return err
	}
	entries := 0
	for _, in := range infos[:min(sn.step, len(infos))] {
		entries += in.Tokens()
	}
	info := ModelInfo{Step: sn.step, Config: sn.model.Cfg, MemoryBytes: sizes[dualmem.SizeDisk],
		Training: s.trainStatus(), Layers: []datadir.LayerStats{}}
	for _, r := range sn.model.Tok.Vocab() {
		info.Vocabulary = append(info.Vocabulary, string(r))
	}
	for _, l := range s.dir.Store.Meta().Layers {
		info.Layers = append(info.Layers, datadir.LayerStats{Name: l.Name, DIn: l.DIn, DOut: l.DOut,
			Entries: entries, Bytes: sizes[l.Name]})
	}
	return c.JSON(http.StatusOK, info)
}

func (s *Server) generate(c echo.Context) error {
	var req query.Request
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return s.answer(c, &req, func(ctx context.Context, e *query.Engine) (*query.Answer, error) {
		return e.Generate(ctx, req)
	})
}

// AttributeRequest is the body of POST /v1/attribute: the text to score and the same
// options as generate (prompt and tokens are not used).
type AttributeRequest struct {
	Text     string   `json:"text"`
	TopK     int      `json:"top_k"`
	RankBy   string   `json:"rank_by"`
	Layers   []string `json:"layers"`
	Bins     int      `json:"bins"`
	GroupBy  string   `json:"group_by"`
	Passages int      `json:"passages"`
	Steps    []int    `json:"steps,omitempty"`
}

func (s *Server) attribute(c echo.Context) error {
	var ar AttributeRequest
	if err := decodeJSON(c, &ar); err != nil {
		return err
	}
	req := query.Request{Prompt: ar.Text, Tokens: 1, TopK: ar.TopK, RankBy: ar.RankBy, Layers: ar.Layers, Bins: ar.Bins,
		GroupBy: ar.GroupBy, Passages: ar.Passages, Steps: ar.Steps}
	err := s.answer(c, &req, func(ctx context.Context, e *query.Engine) (*query.Answer, error) {
		return e.Attribute(ctx, ar.Text, req)
	})
	var in *query.InputError
	if errors.As(err, &in) && in.Field == "prompt" {
		in.Field = "text" // the request's name for what Request calls the prompt
	}
	return err
}

// answer validates req against the served model, takes a slot of the query pool and
// runs one query on the current snapshot.
func (s *Server) answer(c echo.Context, req *query.Request, run func(context.Context, *query.Engine) (*query.Answer, error)) error {
	sn := s.acquire()
	defer s.release(sn)
	if err := req.Normalize(sn.model.Cfg); err != nil {
		return err
	}
	release, err := s.acquireQuery()
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.opts.QueryTimeout)
	defer cancel()
	ans, err := run(ctx, sn.engine)
	if err != nil {
		return err
	}
	ans.Step = sn.step
	return c.JSON(http.StatusOK, ans)
}

// StepInfo is the body of GET /v1/steps/{step}: what one optimizer step trained on.
type StepInfo struct {
	Step int     `json:"step"`
	LR   float64 `json:"lr"`   // η_t as applied
	Clip float64 `json:"clip"` // gradient clip scale c_t as applied (1 = not clipped)
	Loss float64 `json:"loss"`
	Rows []Row   `json:"rows"`
}

// Row is one batch row: the context window and, position by position, the character it
// was trained to predict (Targets[i] follows Context[:i+1]).
type Row struct {
	Row     int      `json:"row"`
	Offset  int64    `json:"offset"` // corpus offset (characters) of the first context character
	Context string   `json:"context"`
	Targets []string `json:"targets"`
}

func (s *Server) getStep(c echo.Context) error {
	t, err := strconv.Atoi(c.Param("step"))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Field: "step",
			Message: "step must be an integer, not " + strconv.Quote(c.Param("step"))}
	}
	sn := s.acquire()
	defer s.release(sn)
	if t < 1 || t > sn.step {
		return errorf(http.StatusNotFound, CodeNotFound, "step %d is not in the served checkpoint (steps 1..%d)", t, sn.step)
	}
	st, err := s.dir.Store.ReadStep(t, s.smallestLayer())
	if err != nil {
		return err
	}
	out := StepInfo{Step: t, LR: float64(st.LR), Clip: float64(st.Clip), Loss: float64(st.Loss), Rows: []Row{}}
	for r := range st.Rows {
		out.Rows = append(out.Rows, s.row(sn.model.Tok, st.Offsets, st.Targets, r, st.Ctx))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) row(tok *lm.Tokenizer, offsets []int64, targets []int32, r, ctx int) Row {
	last := offsets[r*ctx+ctx-1]
	from := max(last-int64(ctx), 0)
	row := Row{Row: r, Offset: from, Context: tok.Decode(s.corpus[from:last]), Targets: make([]string, ctx)}
	for p := range ctx {
		row.Targets[p] = tok.DecodeOne(targets[r*ctx+p])
	}
	return row
}

// smallestLayer is the captured layer cheapest to read when only offsets are needed.
func (s *Server) smallestLayer() string {
	layers := s.dir.Store.Meta().Layers
	best := layers[0]
	for _, l := range layers[1:] {
		if l.DIn+l.DOut < best.DIn+best.DOut {
			best = l
		}
	}
	return best.Name
}
