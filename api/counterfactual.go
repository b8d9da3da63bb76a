package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// Counterfactual job states.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobDone      = "done"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// RankInfluence ranks a counterfactual's top k by exact influence (POST /v1/influence's
// supporting list): the tokens whose removal raises the token's loss most.
const RankInfluence = "influence"

// keptJobs is how many counterfactual jobs GET still answers for, newest first.
const keptJobs = 16

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

type cfJob struct {
	CounterfactualJob
	cancel context.CancelFunc
	done   chan struct{}
	// byInfluence: the job first ranks by influence, then predicts from the memory of sn
	// (held until then) without those topK tokens.
	byInfluence bool
	topK        int
	sn          *snapshot
}

// counterfactuals holds the jobs; one runs at a time.
type counterfactuals struct {
	mu     sync.Mutex
	next   int
	busy   bool     // a job is being set up, queued or running
	closed bool     // the server is closing: no job starts
	recent []*cfJob // newest last, at most keptJobs
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
	if err := s.reserveJob(); err != nil {
		return err
	}
	job, err := s.prepareJob(c.Request().Context(), req)
	if err != nil {
		s.cf.mu.Lock()
		s.cf.busy = false
		s.cf.mu.Unlock()
		return err
	}
	view, err := s.startJob(job)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, view)
}

// reserveJob claims the one job slot or fails with 429.
func (s *Server) reserveJob() error {
	select {
	case <-s.stop:
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	default:
	}
	s.cf.mu.Lock()
	defer s.cf.mu.Unlock()
	if s.cf.busy {
		return errorf(http.StatusTooManyRequests, CodeBusy, "a counterfactual retrain is already running; one runs at a time")
	}
	s.cf.busy = true
	return nil
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
func (s *Server) prepareJob(ctx context.Context, req CounterfactualRequest) (*cfJob, error) {
	sn := s.acquire()
	defer s.release(sn)
	if err := datadir.CheckTokens(sn.Model.Cfg, sn.Step, req.Tokens); err != nil {
		return nil, inputError("tokens", err) // a newer snapshot than checkJob's cannot fail this
	}
	release, err := s.acquireQuery()
	if err != nil {
		return nil, err
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
		return nil, inputError("top_k", err)
	}
	res := &CounterfactualResult{Prob: p.Prob, LogP: math.Log(p.Prob), PredictedProb: p.Predicted, PredictedLogP: math.Log(p.Predicted)}
	return &cfJob{CounterfactualJob: CounterfactualJob{Status: JobQueued, Step: sn.Step, Text: req.Text, Position: req.Position,
		Token: p.Token, Removed: p.Removed, Result: res}}, nil
}

// inputError is a 400 for the datadir's validation errors, naming the field.
func inputError(field string, err error) error {
	if errors.Is(err, datadir.ErrRetrainInput) {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: field, Message: err.Error()}
	}
	return err
}

// startJob files the job and starts its retrain in the background.
func (s *Server) startJob(job *cfJob) (CounterfactualJob, error) {
	ctx, cancel := context.WithCancel(context.Background())
	job.cancel, job.done = cancel, make(chan struct{})
	pending := job.Result
	job.Result = nil
	s.cf.mu.Lock()
	defer s.cf.mu.Unlock()
	if s.cf.closed {
		cancel()
		s.cf.busy = false
		if job.sn != nil {
			s.release(job.sn)
		}
		return CounterfactualJob{}, errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	}
	s.cf.next++
	job.ID = fmt.Sprintf("cf-%d", s.cf.next)
	s.cf.recent = append(s.cf.recent, job)
	if len(s.cf.recent) > keptJobs {
		s.cf.recent = s.cf.recent[len(s.cf.recent)-keptJobs:]
	}
	s.bg.Add(1) // under s.cf.mu: stopCounterfactuals, before the server waits, sets closed
	go s.runJob(ctx, job, pending)
	return job.view(), nil
}

func (s *Server) runJob(ctx context.Context, job *cfJob, res *CounterfactualResult) {
	defer s.bg.Done()
	defer close(job.done)
	s.setJob(job, func(j *CounterfactualJob) { j.Status = JobRunning })
	var r *datadir.Retrained
	var err error
	share := 1.0 // of the progress, the retrain's
	if job.byInfluence {
		share = 0.5
		err = s.rankByInfluence(ctx, job, res)
	}
	if err == nil {
		r, err = s.dir.Retrain(ctx, job.Step, job.Text, job.Position, job.Removed, func(done, total int) {
			s.setJob(job, func(j *CounterfactualJob) { j.Progress = 1 - share + share*float64(done)/float64(total) })
		})
	}
	s.setJob(job, func(j *CounterfactualJob) {
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
	s.cf.mu.Lock()
	s.cf.busy = false
	s.cf.mu.Unlock()
}

// prepareInfluenceJob is prepareJob for rank_by influence: the tokens to remove are known
// only after the influence run, so the job keeps a reference to the snapshot for the
// memory's prediction that follows it.
func (s *Server) prepareInfluenceJob(sn *snapshot, req CounterfactualRequest) (*cfJob, error) {
	contexts, target, err := datadir.Target(sn.Model.Tok, req.Text, req.Position)
	if err != nil {
		return nil, inputError("position", err)
	}
	ps, err := sn.Model.Probe([][]int32{contexts}, []int32{target})
	if err != nil {
		return nil, err
	}
	p := lm.Probabilities(ps[0].Logits, 1)[target]
	s.retain(sn)
	return &cfJob{CounterfactualJob: CounterfactualJob{Status: JobQueued, Step: sn.Step, Text: req.Text, Position: req.Position,
		Token: sn.Model.Tok.DecodeOne(target), Removed: []datadir.TrainToken{}, Result: &CounterfactualResult{Prob: p, LogP: math.Log(p)}},
		byInfluence: true, topK: req.TopK, sn: sn}, nil
}

// rankByInfluence runs the influence of a rank_by influence job (the first half of its
// progress), removes its top k supporting tokens, and fills in the memory's prediction
// without them and the influence's own, then lets the job's snapshot go.
func (s *Server) rankByInfluence(ctx context.Context, job *cfJob, res *CounterfactualResult) error {
	defer func() {
		s.release(job.sn)
		job.sn = nil
	}()
	a, err := s.dir.Influence(ctx, job.Step, job.Text, job.Position, job.topK, func(done, total int) {
		s.setJob(job, func(j *CounterfactualJob) { j.Progress = 0.5 * float64(done) / float64(total) })
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
	pred, err := job.sn.Predict(job.Text, job.Position, removed)
	release()
	if err != nil {
		return err
	}
	logp := res.LogP - a.DeltaLossSupporting
	res.PredictedProb, res.PredictedLogP, res.InfluencePredictedLogP = pred, math.Log(pred), &logp
	s.setJob(job, func(j *CounterfactualJob) { j.Removed = removed })
	return nil
}

func (s *Server) setJob(job *cfJob, f func(*CounterfactualJob)) {
	s.cf.mu.Lock()
	defer s.cf.mu.Unlock()
	f(&job.CounterfactualJob)
}

// view is a copy of the job's public part; the caller holds s.cf.mu.
func (j *cfJob) view() CounterfactualJob {
	v := j.CounterfactualJob
	v.Removed = append([]datadir.TrainToken{}, v.Removed...)
	if v.Result != nil {
		r := *v.Result
		v.Result = &r
	}
	return v
}

func (s *Server) findJob(id string) (*cfJob, error) {
	s.cf.mu.Lock()
	defer s.cf.mu.Unlock()
	for _, j := range s.cf.recent {
		if j.ID == id {
			return j, nil
		}
	}
	return nil, errorf(http.StatusNotFound, CodeNotFound, "no counterfactual job %q (the last %d are kept)", id, keptJobs)
}

func (s *Server) getCounterfactual(c echo.Context) error {
	job, err := s.findJob(c.Param("id"))
	if err != nil {
		return err
	}
	s.cf.mu.Lock()
	v := job.view()
	s.cf.mu.Unlock()
	return c.JSON(http.StatusOK, v)
}

// deleteCounterfactual cancels a queued or running job and answers once it has stopped
// (the replay checks between steps); a finished job is answered as it is.
func (s *Server) deleteCounterfactual(c echo.Context) error {
	job, err := s.findJob(c.Param("id"))
	if err != nil {
		return err
	}
	job.cancel()
	select {
	case <-job.done:
	case <-time.After(10 * time.Second):
	case <-c.Request().Context().Done():
	}
	s.cf.mu.Lock()
	v := job.view()
	s.cf.mu.Unlock()
	return c.JSON(http.StatusOK, v)
}

// stopCounterfactuals cancels the jobs still running, for Close.
func (s *Server) stopCounterfactuals() {
	s.cf.mu.Lock()
	s.cf.closed = true
	jobs := append([]*cfJob{}, s.cf.recent...)
	s.cf.mu.Unlock()
	for _, j := range jobs {
		j.cancel()
	}
}
