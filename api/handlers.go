package api

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/datadir"
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
	// KeptCheckpoints are the checkpoints kept for retraining, KeptBytes what they take.
	KeptCheckpoints []datadir.KeptCheckpoint `json:"kept_checkpoints"`
	KeptBytes       int64                    `json:"kept_checkpoint_bytes"`
}

func (s *Server) getModel(c echo.Context) error {
	sn := s.acquire()
	defer s.release(sn)
	layers, disk, err := s.dir.LayerStats(sn.Step)
	if err != nil {
		return err
	}
	info := ModelInfo{Step: sn.Step, Config: sn.Model.Cfg, MemoryBytes: disk, Training: s.trainStatus(), Layers: layers}
	if info.KeptCheckpoints, err = s.dir.Store.KeptCheckpoints(); err != nil {
		return err
	}
	for _, k := range info.KeptCheckpoints {
		info.KeptBytes += k.Bytes
	}
	for _, r := range sn.Model.Tok.Vocab() {
		info.Vocabulary = append(info.Vocabulary, string(r))
	}
	return c.JSON(http.StatusOK, info)
}

func (s *Server) generate(c echo.Context) error {
	req := query.DefaultGenerate()
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return s.answer(c, job{
		estimate: func(e *query.Engine) (int64, error) { return e.EstimateGenerate(req) },
		run:      func(ctx context.Context, e *query.Engine) (*query.Answer, error) { return e.Generate(ctx, req) },
	})
}

func (s *Server) attribute(c echo.Context) error {
	req := query.DefaultAttribute()
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	return s.answer(c, job{
		estimate: func(e *query.Engine) (int64, error) { return e.EstimateAttribute(req) },
		run:      func(ctx context.Context, e *query.Engine) (*query.Answer, error) { return e.Attribute(ctx, req) },
	})
}

// job is one query: the estimate of its answer's size (which also validates the request)
// and the work that computes the answer.
type job struct {
	estimate func(*query.Engine) (int64, error)
	run      func(context.Context, *query.Engine) (*query.Answer, error)
}

// answer runs one query and encodes its answer within a slot of the query pool, then
// writes it with the slot released: a client that reads slowly holds its connection and
// the encoded bytes, never a slot. An answer over the limit is refused unsent. A write
// that cannot finish is logged with the bytes it got through.
func (s *Server) answer(c echo.Context, j job) error {
	f, err := answerFormat(c)
	if err != nil {
		return err
	}
	var body []byte
	_, err = s.query(c.Request().Context(), j, func(ans *query.Answer) error {
		b, err := f.encode(ans)
		if err != nil {
			return err
		}
		if int64(len(b)) > s.opts.MaxAnswerBytes {
			return &query.TooLargeError{Estimate: int64(len(b)), Limit: s.opts.MaxAnswerBytes}
		}
		body = b
		return nil
	})
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, f.mime)
	w.Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if n, err := w.Write(body); err != nil {
		c.Set(writeErrorKey, fmt.Errorf("wrote %d of %d bytes: %w", n, len(body), err))
	}
	return nil
}

// query runs one job on the current snapshot: a request that is invalid or whose answer
// would be over the answer limit fails first, then the work runs within a slot of the
// query pool and the query timeout, and finish (when not nil) on its answer, still within
// the slot. It is the path of POST /v1/generate, /v1/attribute and the plots. A query cut
// short by the server's shutdown fails with 503 shutting_down.
func (s *Server) query(ctx context.Context, j job, finish func(*query.Answer) error) (*query.Answer, error) {
	sn := s.acquire()
	defer s.release(sn)
	estimate, err := j.estimate(sn.Engine)
	if err != nil {
		return nil, err
	}
	if estimate > s.opts.MaxAnswerBytes {
		return nil, &query.TooLargeError{Estimate: estimate, Limit: s.opts.MaxAnswerBytes}
	}
	release, err := s.acquireQuery()
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	ans, err := j.run(ctx, sn.Engine)
	if err != nil {
		if errors.Is(context.Cause(ctx), errShutdown) {
			return nil, errShuttingDown()
		}
		return nil, err
	}
	ans.Step = sn.Step
	if finish != nil {
		return ans, finish(ans)
	}
	return ans, nil
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
	if t < 1 || t > sn.Step {
		return errorf(http.StatusNotFound, CodeNotFound, "step %d is not in the served checkpoint (steps 1..%d)", t, sn.Step)
	}
	st, err := s.dir.StepTokens(t)
	if err != nil {
		return err
	}
	out := StepInfo{Step: t, LR: float64(st.LR), Clip: float64(st.Clip), Loss: float64(st.Loss), Rows: []Row{}}
	for r := range st.Rows {
		out.Rows = append(out.Rows, s.row(sn.Model.Tok, st.Offsets, st.Targets, r, st.Ctx))
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
