package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// RankInfluence ranks a counterfactual's top k by exact influence (POST /v1/influence's
// supporting list): the tokens whose removal raises the token's loss most.
const RankInfluence = "influence"

// CounterfactualRequest is the body of POST /v1/counterfactual: the token at Position of
// Text (or the generated token Generated of Prompt's continuation, as tokenRef says), and
// what to remove: the top TopK training tokens of its `out` attribution ranked by RankBy,
// or the training tokens listed in Tokens.
type CounterfactualRequest struct {
	Text        string               `json:"text"`
	Position    int                  `json:"position"`
	Prompt      string               `json:"prompt"`
	Generated   int                  `json:"generated"`
	Temperature *float64             `json:"temperature"`
	Seed        uint64               `json:"seed"`
	TopK        int                  `json:"top_k"`
	RankBy      string               `json:"rank_by"`
	Tokens      []datadir.TrainToken `json:"tokens"`
}

// CounterfactualResult compares the memory's prediction with a real retrain.
type CounterfactualResult struct {
	Prob float64 `json:"prob"` // the served model's probability of the token
	LogP float64 `json:"logp"`
	// PredictedProb is the memory's: the final weights minus those tokens' updates, the rest
	// of training unchanged.
	PredictedProb float64 `json:"predicted_prob"`
	PredictedLogP float64 `json:"predicted_logp"`
	// RealProb is the model retrained without them, every later step replayed.
	RealProb float64 `json:"real_prob"`
	RealLogP float64 `json:"real_logp"`
	// InfluencePredictedLogP (rank_by influence only) is log p predicted from the exact
	// influence to first order: LogP minus the removed tokens' predicted Δloss.
	InfluencePredictedLogP *float64 `json:"influence_predicted_logp,omitempty"`
	FromStep               int      `json:"from_step"` // the kept checkpoint the replay started from
	ReplayedSteps          int      `json:"replayed_steps"`
	Seconds                float64  `json:"seconds"`
}

// CounterfactualJob is the body of every /v1/counterfactual answer.
type CounterfactualJob struct {
	ID       string                `json:"id"`
	Status   string                `json:"status"`
	Progress float64               `json:"progress"` // replayed share of the steps, 0..1
	Step     int                   `json:"step"`     // the served checkpoint asked about
	Text     string                `json:"text"`
	Position int                   `json:"position"`
	Token    string                `json:"token"` // the character at Position
	Removed  []datadir.TrainToken  `json:"removed"`
	Result   *CounterfactualResult `json:"result"` // set once done
	Error    string                `json:"error,omitempty"`
}

func (CounterfactualJob) kind() jobKind {
	return jobKind{prefix: "cf", name: "counterfactual", busy: "a counterfactual retrain is already running; one runs at a time"}
}

func (j CounterfactualJob) withID(id string) CounterfactualJob { j.ID = id; return j }

// clone copies the removed tokens and the result too: the job changes both.
func (j CounterfactualJob) clone() CounterfactualJob {
	j.Removed = append([]datadir.TrainToken{}, j.Removed...)
	if j.Result != nil {
		r := *j.Result
		j.Result = &r
	}
	return j
}

// cfRun is what a counterfactual job's run needs beyond its view.
type cfRun struct {
	res *CounterfactualResult // filled in as the job goes, set on the view once done
	// byInfluence: the job first ranks by influence, then predicts from the memory of sn
	// (held until then) without those topK tokens.
	byInfluence bool
	topK        int
	sn          *snapshot
}

func (s *Server) postCounterfactual(c echo.Context) error {
	if s.opts.Token == "" && !s.loopback.Load() {
		return errorf(http.StatusForbidden, CodeForbidden, "retraining is only open on a loopback address or with a token")
	}
	var req CounterfactualRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if (req.TopK > 0) == (len(req.Tokens) > 0) || req.TopK < 0 {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "top_k",
			Message: "say what to remove: top_k (1.." + strconv.Itoa(query.MaxTopK) + ") or tokens, not both and not neither"}
	}
	var err error
	if req.Text, req.Position, err = s.resolveToken(req.tokenRef()); err != nil {
		return err
	}
	if err := s.checkJob(req); err != nil {
		return err
	}
	if err := s.cf.acquire(s.stop); err != nil {
		return err
	}
	v, run, err := s.prepareJob(c.Request().Context(), req)
	if err != nil {
		s.cf.release()
		return err
	}
	view, err := s.cf.file(v, &s.bg, func(ctx context.Context, j *bgJob[CounterfactualJob]) { s.runJob(ctx, j, run) })
	if err != nil {
		if run.sn != nil {
			s.release(run.sn)
		}
		return err
	}
	return c.JSON(http.StatusAccepted, view)
}

// checkJob refuses a request that names something the served checkpoint does not have,
// before the job slot is asked for: a bad request is a 400 even while a job runs.
func (s *Server) checkJob(req CounterfactualRequest) error {
	sn := s.acquire()
	defer s.release(sn)
	if sn.Engine.Scanner(lm.OutLayer) == nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Message: "the out layer has no memory: the prediction needs it"}
	}
	if _, err := checkTarget(sn, req.Text, req.Position); err != nil {
		return err
	}
	if err := datadir.CheckTokens(sn.Model.Cfg, sn.Step, req.Tokens); err != nil {
		return inputError("tokens", err)
	}
	if req.RankBy == RankInfluence {
		if req.TopK > datadir.MaxInfluenceTopK {
			return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "top_k",
				Message: "top_k " + strconv.Itoa(req.TopK) + " outside 1.." + strconv.Itoa(datadir.MaxInfluenceTopK)}
		}
		return nil
	}
	ar := query.AttributeRequest{Text: req.Text, TopK: req.TopK, RankBy: req.RankBy}
	return ar.Normalize(sn.Model.Cfg)
}

// prepareJob computes the memory's prediction on the served checkpoint, within a slot of
// the query pool (it is a query); the retrain that follows holds no slot.
func (s *Server) prepareJob(ctx context.Context, req CounterfactualRequest) (CounterfactualJob, *cfRun, error) {
	sn := s.acquire()
	defer s.release(sn)
	if err := datadir.CheckTokens(sn.Model.Cfg, sn.Step, req.Tokens); err != nil {
		return CounterfactualJob{}, nil, inputError("tokens", err) // a newer snapshot than checkJob's cannot fail this
	}
	release, err := s.acquireQuery()
	if err != nil {
		return CounterfactualJob{}, nil, err
	}
	defer release()
	if req.RankBy == RankInfluence && req.TopK > 0 {
		return s.prepareInfluenceJob(sn, req)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	p, err := sn.Counterfactual(ctx, datadir.Question{Text: req.Text, Position: req.Position, TopK: req.TopK,
		RankBy: req.RankBy, Tokens: req.Tokens})
	if err != nil {
		return CounterfactualJob{}, nil, inputError("top_k", err)
	}
	res := &CounterfactualResult{Prob: p.Prob, LogP: math.Log(p.Prob), PredictedProb: p.Predicted, PredictedLogP: math.Log(p.Predicted)}
	return CounterfactualJob{Status: JobQueued, Step: sn.Step, Text: req.Text, Position: req.Position,
		Token: p.Token, Removed: p.Removed}, &cfRun{res: res}, nil
}

// inputError is a 400 for the datadir's validation errors, naming the field.
func inputError(field string, err error) error {
	if errors.Is(err, datadir.ErrRetrainInput) {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: field, Message: err.Error()}
	}
	return err
}

// runJob retrains without the job's tokens (after ranking them, for rank_by influence),
// holding no slot of the query pool.
func (s *Server) runJob(ctx context.Context, jb *bgJob[CounterfactualJob], run *cfRun) {
	s.cf.set(jb, func(j *CounterfactualJob) { j.Status = JobRunning })
	var r *datadir.Retrained
	var err error
	share := 1.0 // of the progress, the retrain's
	if run.byInfluence {
		share = 0.5
		err = s.rankByInfluence(ctx, jb, run)
	}
	if err == nil {
		q := jb.view // only this goroutine changes it
		r, err = s.dir.Retrain(ctx, q.Step, q.Text, q.Position, q.Removed, func(done, total int) {
			s.cf.set(jb, func(j *CounterfactualJob) { j.Progress = 1 - share + share*float64(done)/float64(total) })
		})
	}
	res := run.res
	s.cf.set(jb, func(j *CounterfactualJob) {
		switch {
		case errors.Is(err, context.Canceled):
			j.Status, j.Error = JobCancelled, "cancelled"
		case err != nil:
			j.Status, j.Error = JobFailed, err.Error()
			s.log.Error("counterfactual retrain failed", "id", j.ID, "err", err)
		default:
			res.RealProb, res.RealLogP = r.Prob, r.LogP
			res.FromStep, res.ReplayedSteps, res.Seconds = r.From, r.Replayed, r.Seconds
			j.Status, j.Progress, j.Result = JobDone, 1, res
		}
	})
}

// prepareInfluenceJob is prepareJob for rank_by influence: the tokens to remove are known
// only after the influence run, so the job keeps a reference to the snapshot for the
// memory's prediction that follows it.
func (s *Server) prepareInfluenceJob(sn *snapshot, req CounterfactualRequest) (CounterfactualJob, *cfRun, error) {
	contexts, target, err := datadir.Target(sn.Model.Tok, req.Text, req.Position)
	if err != nil {
		return CounterfactualJob{}, nil, inputError("position", err)
	}
	ps, err := sn.Model.Probe([][]int32{contexts}, []int32{target})
	if err != nil {
		return CounterfactualJob{}, nil, err
	}
	p := lm.Probabilities(ps[0].Logits, 1)[target]
	s.retain(sn)
	return CounterfactualJob{Status: JobQueued, Step: sn.Step, Text: req.Text, Position: req.Position,
			Token: sn.Model.Tok.DecodeOne(target), Removed: []datadir.TrainToken{}},
		&cfRun{res: &CounterfactualResult{Prob: p, LogP: math.Log(p)}, byInfluence: true, topK: req.TopK, sn: sn}, nil
}

// rankByInfluence runs the influence of a rank_by influence job (the first half of its
// progress), removes its top k supporting tokens, and fills in the memory's prediction
// without them and the influence's own, then lets the job's snapshot go.
func (s *Server) rankByInfluence(ctx context.Context, jb *bgJob[CounterfactualJob], run *cfRun) error {
	defer func() {
		s.release(run.sn)
		run.sn = nil
	}()
	q := jb.view // only this goroutine changes it
	a, err := s.dir.Influence(ctx, q.Step, q.Text, q.Position, run.topK, func(done, total int) {
		s.cf.set(jb, func(j *CounterfactualJob) { j.Progress = 0.5 * float64(done) / float64(total) })
	})
	if err != nil {
		return err
	}
	removed := make([]datadir.TrainToken, len(a.Supporting))
	for i, t := range a.Supporting {
		removed[i] = datadir.TrainToken{Step: t.Step, Row: t.Row, Pos: t.Pos}
	}
	release, err := s.waitQuery(ctx)
	if err != nil {
		return err
	}
	pred, err := run.sn.Predict(q.Text, q.Position, removed)
	release()
	if err != nil {
		return err
	}
	logp := run.res.LogP - a.DeltaLossSupporting
	run.res.PredictedProb, run.res.PredictedLogP, run.res.InfluencePredictedLogP = pred, math.Log(pred), &logp
	s.cf.set(jb, func(j *CounterfactualJob) { j.Removed = removed })
	return nil
}
