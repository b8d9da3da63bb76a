package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
)

// MaxTrainSteps bounds one POST /v1/train.
const MaxTrainSteps = 100000

// TrainStatus is the body of GET /v1/train (and of the POST that starts a run).
type TrainStatus struct {
	Running      bool                `json:"running"`
	Step         int                 `json:"step"`      // last step trained (may be ahead of committed)
	Committed    int                 `json:"committed"` // last committed step: what queries see
	Until        int                 `json:"until"`     // the step this run stops at
	Loss         float64             `json:"loss"`      // train loss of the last step's batch
	EvalLoss     *float64            `json:"eval_loss"` // held-out loss (one batch of held-out windows) at this run's last checkpoint
	TokensPerSec float64             `json:"tokens_per_sec"`
	StartedAt    *time.Time          `json:"started_at"`
	FinishedAt   *time.Time          `json:"finished_at"`
	Error        string              `json:"error,omitempty"` // why the last run stopped early
	Losses       []datadir.LossPoint `json:"losses"`          // loss over all committed steps, for the curve
}

// maxLossPoints bounds the loss curve sent with every training status.
const maxLossPoints = 400

type trainRequest struct {
	Steps int `json:"steps"`
}

// training owns the trainer; one run at a time, in the background.
type training struct {
	mu      sync.Mutex
	status  TrainStatus
	trainer *lm.Trainer // created by the first run, kept for the next
	cancel  context.CancelFunc
	done    chan struct{}
}

func (s *Server) getTrain(c echo.Context) error {
	return c.JSON(http.StatusOK, s.trainStatus())
}

func (s *Server) trainStatus() TrainStatus {
	// The loss curve is read from the store outside the lock, which the training loop takes
	// after every step.
	losses, err := s.dir.LossCurve(maxLossPoints)
	if err != nil {
		losses = []datadir.LossPoint{}
	}
	s.train.mu.Lock()
	defer s.train.mu.Unlock()
	st := s.train.status
	st.Committed, st.Losses = s.dir.Steps(), losses
	if !st.Running && st.Step < st.Committed {
		st.Step = st.Committed
	}
	return st
}

func (s *Server) postTrain(c echo.Context) error {
	if s.opts.Token == "" && !s.loopback.Load() {
		return errorf(http.StatusForbidden, CodeForbidden, "training is only open on a loopback address or with a token")
	}
	var req trainRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Steps < 1 || req.Steps > MaxTrainSteps {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Field: "steps",
			Message: "steps must be between 1 and 100000"}
	}
	if err := s.startTraining(req.Steps); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, s.trainStatus())
}

// Train starts a background run of n more steps after the last commit, the run POST
// /v1/train starts (`serve --continue-training` calls it before serving).
func (s *Server) Train(n int) error { return s.startTraining(n) }

// startTraining launches a run of n more steps after the last commit.
func (s *Server) startTraining(n int) error {
	t := &s.train
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status.Running {
		return errorf(http.StatusConflict, CodeConflict, "training is already running (until step %d)", t.status.Until)
	}
	select {
	case <-s.stop:
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	default:
	}
	now := time.Now()
	from := s.dir.Steps()
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel, t.done = cancel, make(chan struct{})
	t.status = TrainStatus{Running: true, Step: from, Until: from + n, StartedAt: &now}
	s.bg.Add(1)
	go s.runTraining(ctx, from+n, t.done)
	return nil
}

func (s *Server) runTraining(ctx context.Context, until int, done chan struct{}) {
	defer s.bg.Done()
	defer close(done)
	err := s.trainTo(ctx, until)
	t := &s.train
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.status.Running, t.status.FinishedAt = false, &now
	if err != nil {
		t.status.Error = err.Error()
		if !errors.Is(err, context.Canceled) {
			s.log.Error("training stopped", "err", err)
		}
	}
	s.log.Info("training finished", "step", s.dir.Steps())
}

func (s *Server) trainTo(ctx context.Context, until int) error {
	s.train.mu.Lock()
	tr := s.train.trainer
	s.train.mu.Unlock()
	if tr == nil {
		var err error
		if tr, err = s.dir.Resume(); err != nil {
			return err
		}
		s.train.mu.Lock()
		s.train.trainer = tr
		s.train.mu.Unlock()
	}
	mem := s.dir.Memory(func() {
		select {
		case s.committed <- struct{}{}: // wake the refresher
		default:
		}
	})
	return tr.Train(ctx, mem, until, func(p lm.Progress) {
		s.train.mu.Lock()
		defer s.train.mu.Unlock()
		st := &s.train.status
		st.Step, st.Loss, st.TokensPerSec = p.Step, float64(p.Loss), p.TokensPerSec
		if !math.IsNaN(p.EvalLoss) {
			ev := p.EvalLoss
			st.EvalLoss = &ev
		}
	})
}

// stopTraining cancels a run (Trainer.Train commits on cancel), waits for it and frees
// the trainer.
func (s *Server) stopTraining() {
	t := &s.train
	t.mu.Lock()
	cancel, done := t.cancel, t.done
	t.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.trainer != nil {
		t.trainer.Close()
		t.trainer = nil
	}
}
