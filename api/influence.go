package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
)

// DefaultInfluenceTopK is how many training tokens an influence answer lists per ranking
// when the request names no top_k.
const DefaultInfluenceTopK = 10

// InfluenceRequest is the body of POST /v1/influence: the token at Position of Text (or
// the generated token Generated of Prompt's continuation, as tokenRef says), and how many
// training tokens to list per ranking.
type InfluenceRequest struct {
	Text        string   `json:"text"`
	Position    int      `json:"position"`
	Prompt      string   `json:"prompt"`
	Generated   int      `json:"generated"`
	Temperature *float64 `json:"temperature"`
	Seed        uint64   `json:"seed"`
	TopK        int      `json:"top_k"`
}

// InfluenceToken is one training token of an influence answer.
type InfluenceToken struct {
	Step    int    `json:"step"`
	Row     int    `json:"row"`
	Pos     int    `json:"pos"`
	Offset  int64  `json:"offset"`  // corpus offset (characters) of the target
	Context string `json:"context"` // the context window the model saw
	Target  string `json:"target"`  // the character it was trained to predict
	// Influence is ∂loss/∂ε: the derivative of the query token's loss after training with
	// respect to this token's loss weight ε, through every SGD step. Positive: training on it
	// raised the query's loss.
	Influence float64 `json:"influence"`
	DeltaLoss float64 `json:"delta_loss"` // first-order change of the loss without it: −Influence
}

// InfluenceResult ranks every training token up to the checkpoint by its exact influence.
type InfluenceResult struct {
	Checkpoint int     `json:"checkpoint"` // the model asked about: after this step
	Loss       float64 `json:"loss"`       // −log p of the token
	Prob       float64 `json:"prob"`
	Scored     int     `json:"scored"`    // training tokens scored
	Snapshots  []int   `json:"snapshots"` // the kept checkpoints the run was replayed from
	// Top are the k tokens of largest |influence|; Supporting the k most negative (removing
	// them raises the loss most); Opposing the k most positive.
	Top        []InfluenceToken `json:"top"`
	Supporting []InfluenceToken `json:"supporting"`
	Opposing   []InfluenceToken `json:"opposing"`
	// PredictedDeltaLoss is the first-order change of the loss from removing all of Top:
	// minus the sum of their influences (and likewise for Supporting and Opposing).
	PredictedDeltaLoss           float64 `json:"predicted_delta_loss"`
	PredictedDeltaLossSupporting float64 `json:"predicted_delta_loss_supporting"`
	PredictedDeltaLossOpposing   float64 `json:"predicted_delta_loss_opposing"`
	Seconds                      float64 `json:"seconds"` // the run's wall time; 0 when cached
	Cached                       bool    `json:"cached"`  // answered from an earlier run
}

// InfluenceJob is the body of every /v1/influence answer.
type InfluenceJob struct {
	ID       string           `json:"id"`
	Status   string           `json:"status"`
	Progress float64          `json:"progress"` // reversed share of the steps, 0..1
	Step     int              `json:"step"`     // the served checkpoint asked about
	Text     string           `json:"text"`
	Position int              `json:"position"`
	Token    string           `json:"token"` // the character at Position
	TopK     int              `json:"top_k"`
	Result   *InfluenceResult `json:"result"` // set once done
	Error    string           `json:"error,omitempty"`
}

// kind: an influence job has a slot of its own, apart from the counterfactual one.
func (InfluenceJob) kind() jobKind {
	return jobKind{prefix: "inf", name: "influence", busy: "an influence run is already running; one runs at a time"}
}

func (j InfluenceJob) withID(id string) InfluenceJob { j.ID = id; return j }

// clone shares the result: it is never changed once set.
func (j InfluenceJob) clone() InfluenceJob { return j }

// postInfluence starts an influence job, or answers 200 with the job done at once when the
// same question about the same checkpoint was answered before (the data directory caches
// the runs).
func (s *Server) postInfluence(c echo.Context) error {
	if s.opts.Token == "" && !s.loopback.Load() {
		return errorf(http.StatusForbidden, CodeForbidden, "influence runs are only open on a loopback address or with a token")
	}
	var req InfluenceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.TopK == 0 {
		req.TopK = DefaultInfluenceTopK
	}
	if req.TopK < 1 || req.TopK > datadir.MaxInfluenceTopK {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "top_k",
			Message: "top_k " + strconv.Itoa(req.TopK) + " outside 1.." + strconv.Itoa(datadir.MaxInfluenceTopK)}
	}
	var err error
	if req.Text, req.Position, err = s.resolveToken(req.tokenRef()); err != nil {
		return err
	}
	sn := s.acquire()
	step := sn.Step
	token, err := checkTarget(sn, req.Text, req.Position)
	s.release(sn)
	if err != nil {
		return err
	}
	cached, err := s.dir.CachedInfluence(step, req.Text, req.Position, req.TopK)
	if errors.Is(err, datadir.ErrRetrainInput) { // the text and top k are checked: the step is not kept
		return errorf(http.StatusConflict, CodeConflict, "%s", err.Error())
	}
	if err != nil {
		return err
	}
	job := InfluenceJob{Status: JobQueued, Step: step, Text: req.Text, Position: req.Position, Token: token, TopK: req.TopK}
	if cached != nil {
		job.Status, job.Progress, job.Result = JobDone, 1, influenceResult(cached)
		view, err := s.inf.file(job, &s.bg, nil)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, view)
	}
	if err := s.inf.acquire(s.stop); err != nil {
		return err
	}
	view, err := s.inf.file(job, &s.bg, s.runInfluence)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, view)
}

// checkTarget refuses a text and position the snapshot's tokenizer cannot ask about and
// returns the character at position.
func checkTarget(sn *snapshot, text string, position int) (string, error) {
	_, target, err := datadir.Target(sn.Model.Tok, text, position)
	if err != nil {
		var unk *lm.UnknownCharsError
		if errors.As(err, &unk) {
			return "", inputError("text", err)
		}
		return "", inputError("position", err)
	}
	return sn.Model.Tok.DecodeOne(target), nil
}

// runInfluence replays the run backwards on a trainer of its own: it holds no slot of the
// query pool and no snapshot.
func (s *Server) runInfluence(ctx context.Context, jb *bgJob[InfluenceJob]) {
	s.inf.set(jb, func(j *InfluenceJob) { j.Status = JobRunning })
	q := jb.view // only this goroutine changes it
	a, err := s.dir.Influence(ctx, q.Step, q.Text, q.Position, q.TopK, func(done, total int) {
		s.inf.set(jb, func(j *InfluenceJob) { j.Progress = float64(done) / float64(total) })
	})
	s.inf.set(jb, func(j *InfluenceJob) {
		switch {
		case errors.Is(err, context.Canceled):
			j.Status, j.Error = JobCancelled, "cancelled"
		case err != nil:
			j.Status, j.Error = JobFailed, err.Error()
			s.log.Error("influence run failed", "id", j.ID, "err", err)
		default:
			j.Status, j.Progress, j.Result = JobDone, 1, influenceResult(a)
		}
	})
}

func influenceResult(a *datadir.InfluenceAnswer) *InfluenceResult {
	return &InfluenceResult{Checkpoint: a.Step, Loss: a.Loss, Prob: a.Prob, Scored: a.Scored, Snapshots: a.Snapshots,
		Top: influenceTokens(a.Top), Supporting: influenceTokens(a.Supporting), Opposing: influenceTokens(a.Opposing),
		PredictedDeltaLoss: a.DeltaLossTop, PredictedDeltaLossSupporting: a.DeltaLossSupporting,
		PredictedDeltaLossOpposing: a.DeltaLossOpposing, Seconds: a.Seconds, Cached: a.Cached}
}

func influenceTokens(ts []datadir.InfluenceToken) []InfluenceToken {
	out := make([]InfluenceToken, len(ts))
	for i, t := range ts {
		out[i] = InfluenceToken{Step: t.Step, Row: t.Row, Pos: t.Pos, Offset: t.Offset, Context: t.Context, Target: t.Target,
			Influence: t.Score, DeltaLoss: t.DeltaLoss}
	}
	return out
}
