package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

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

type infJob struct {
	InfluenceJob
	cancel context.CancelFunc
	done   chan struct{}
}

// influences holds the influence jobs; one runs at a time (apart from the counterfactual
// one: each has its own slot).
type influences struct {
	mu     sync.Mutex
	next   int
	busy   bool // a job is queued or running
	closed bool // the server is closing: no job starts
	recent []*infJob
}

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
	job := &infJob{InfluenceJob: InfluenceJob{Status: JobQueued, Step: step, Text: req.Text, Position: req.Position, Token: token, TopK: req.TopK}}
	if cached != nil {
		job.Status, job.Progress, job.Result = JobDone, 1, influenceResult(cached)
		view, err := s.fileInfluence(job, false)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, view)
	}
	if err := s.reserveInfluence(); err != nil {
		return err
	}
	view, err := s.fileInfluence(job, true)
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

// reserveInfluence claims the one influence slot or fails with 429.
func (s *Server) reserveInfluence() error {
	select {
	case <-s.stop:
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	default:
	}
	s.inf.mu.Lock()
	defer s.inf.mu.Unlock()
	if s.inf.busy {
		return errorf(http.StatusTooManyRequests, CodeBusy, "an influence run is already running; one runs at a time")
	}
	s.inf.busy = true
	return nil
}

// fileInfluence gives the job its id and keeps it; with run, it starts the run in the
// background (the caller holds the slot, which the run frees).
func (s *Server) fileInfluence(job *infJob, run bool) (InfluenceJob, error) {
	ctx, cancel := context.WithCancel(context.Background())
	job.cancel, job.done = cancel, make(chan struct{})
	s.inf.mu.Lock()
	defer s.inf.mu.Unlock()
	if s.inf.closed {
		cancel()
		if run {
			s.inf.busy = false
		}
		return InfluenceJob{}, errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	}
	s.inf.next++
	job.ID = fmt.Sprintf("inf-%d", s.inf.next)
	s.inf.recent = append(s.inf.recent, job)
	if len(s.inf.recent) > keptJobs {
		s.inf.recent = s.inf.recent[len(s.inf.recent)-keptJobs:]
	}
	if !run {
		cancel()
		close(job.done)
		return job.view(), nil
	}
	s.bg.Add(1) // under s.inf.mu: stopInfluences, before the server waits, sets closed
	go s.runInfluence(ctx, job)
	return job.view(), nil
}

// runInfluence replays the run backwards on a trainer of its own: it holds no slot of the
// query pool and no snapshot.
func (s *Server) runInfluence(ctx context.Context, job *infJob) {
	defer s.bg.Done()
	defer close(job.done)
	s.setInfluence(job, func(j *InfluenceJob) { j.Status = JobRunning })
	a, err := s.dir.Influence(ctx, job.Step, job.Text, job.Position, job.TopK, func(done, total int) {
		s.setInfluence(job, func(j *InfluenceJob) { j.Progress = float64(done) / float64(total) })
	})
	s.setInfluence(job, func(j *InfluenceJob) {
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
	s.inf.mu.Lock()
	s.inf.busy = false
	s.inf.mu.Unlock()
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

func (s *Server) setInfluence(job *infJob, f func(*InfluenceJob)) {
	s.inf.mu.Lock()
	defer s.inf.mu.Unlock()
	f(&job.InfluenceJob)
}

// view is a copy of the job's public part; the caller holds s.inf.mu. A result is never
// changed once set, so it is shared.
func (j *infJob) view() InfluenceJob { return j.InfluenceJob }

func (s *Server) findInfluence(id string) (*infJob, error) {
	s.inf.mu.Lock()
	defer s.inf.mu.Unlock()
	for _, j := range s.inf.recent {
		if j.ID == id {
			return j, nil
		}
	}
	return nil, errorf(http.StatusNotFound, CodeNotFound, "no influence job %q (the last %d are kept)", id, keptJobs)
}

func (s *Server) getInfluence(c echo.Context) error {
	job, err := s.findInfluence(c.Param("id"))
	if err != nil {
		return err
	}
	s.inf.mu.Lock()
	v := job.view()
	s.inf.mu.Unlock()
	return c.JSON(http.StatusOK, v)
}

// deleteInfluence cancels a queued or running job and answers once it has stopped (the
// reverse pass checks between steps); a finished job is answered as it is.
func (s *Server) deleteInfluence(c echo.Context) error {
	job, err := s.findInfluence(c.Param("id"))
	if err != nil {
		return err
	}
	job.cancel()
	select {
	case <-job.done:
	case <-time.After(10 * time.Second):
	case <-c.Request().Context().Done():
	}
	s.inf.mu.Lock()
	v := job.view()
	s.inf.mu.Unlock()
	return c.JSON(http.StatusOK, v)
}

// stopInfluences cancels the jobs still running, for Close.
func (s *Server) stopInfluences() {
	s.inf.mu.Lock()
	s.inf.closed = true
	jobs := append([]*infJob{}, s.inf.recent...)
	s.inf.mu.Unlock()
	for _, j := range jobs {
		j.cancel()
	}
}
