package api

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// Job states, of every kind of background job.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobDone      = "done"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// keptJobs is how many jobs of each kind GET still answers for, newest first.
const keptJobs = 16

// jobKind is what tells one kind of job from another in its ids and messages.
type jobKind struct {
	prefix string // of the ids: "cf" numbers them cf-1, cf-2, …
	name   string // in the 404 for an unknown id
	busy   string // the 429's message while one runs
}

// jobView is what a store needs of a kind's public view, the body of its answers.
type jobView[V any] interface {
	kind() jobKind
	withID(id string) V // the view with its ID set
	clone() V           // a copy to answer with, sharing nothing the job changes later
}

// bgJob is one background job: its public view, guarded by the store's mu, and how to stop
// it.
type bgJob[V jobView[V]] struct {
	id     string
	view   V
	cancel context.CancelFunc
	done   chan struct{} // closed once it has stopped
}

// jobs holds the jobs of one kind; one runs at a time.
type jobs[V jobView[V]] struct {
	mu     sync.Mutex
	next   int
	busy   bool        // a job is being set up, queued or running
	closed bool        // the server is closing: no job starts
	recent []*bgJob[V] // newest last, at most keptJobs
}

// acquire claims the one job slot or fails with 429 (503 once the server stops).
func (js *jobs[V]) acquire(stop <-chan struct{}) error {
	select {
	case <-stop:
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	default:
	}
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.busy {
		var v V
		return errorf(http.StatusTooManyRequests, CodeBusy, "%s", v.kind().busy)
	}
	js.busy = true
	return nil
}

// release frees the job slot.
func (js *jobs[V]) release() {
	js.mu.Lock()
	js.busy = false
	js.mu.Unlock()
}

// file gives the job its id and keeps it, and answers its view. With run, the caller holds
// the slot: run goes on in the background, counted in bg, and the slot is freed when it
// returns (or at once if the server is closing). Without run the job is filed as it is,
// finished.
func (js *jobs[V]) file(v V, bg *sync.WaitGroup, run func(context.Context, *bgJob[V])) (V, error) {
	ctx, cancel := context.WithCancel(context.Background())
	j := &bgJob[V]{view: v, cancel: cancel, done: make(chan struct{})}
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.closed {
		cancel()
		if run != nil {
			js.busy = false
		}
		var zero V
		return zero, errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	}
	js.next++
	j.id = fmt.Sprintf("%s-%d", v.kind().prefix, js.next)
	j.view = j.view.withID(j.id)
	js.recent = append(js.recent, j)
	if len(js.recent) > keptJobs {
		js.recent = js.recent[len(js.recent)-keptJobs:]
	}
	if run == nil {
		cancel()
		close(j.done)
		return j.view.clone(), nil
	}
	bg.Add(1) // under mu: stop, before the server waits, sets closed
	go func() {
		defer bg.Done()
		defer close(j.done)
		run(ctx, j)
		js.release()
	}()
	return j.view.clone(), nil
}

// set changes the job's view under the lock.
func (js *jobs[V]) set(j *bgJob[V], f func(*V)) {
	js.mu.Lock()
	defer js.mu.Unlock()
	f(&j.view)
}

// viewOf is a copy of the job's view, taken under the lock.
func (js *jobs[V]) viewOf(j *bgJob[V]) V {
	js.mu.Lock()
	defer js.mu.Unlock()
	return j.view.clone()
}

func (js *jobs[V]) find(id string) (*bgJob[V], error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	for _, j := range js.recent {
		if j.id == id {
			return j, nil
		}
	}
	var v V
	return nil, errorf(http.StatusNotFound, CodeNotFound, "no %s job %q (the last %d are kept)", v.kind().name, id, keptJobs)
}

// get answers GET …/:id with the job's view.
func (js *jobs[V]) get(c echo.Context) error {
	j, err := js.find(c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, js.viewOf(j))
}

// delete cancels a queued or running job and answers once it has stopped (the jobs check
// between steps), or after 10 s; a finished job is answered as it is.
func (js *jobs[V]) delete(c echo.Context) error {
	j, err := js.find(c.Param("id"))
	if err != nil {
		return err
	}
	j.cancel()
	select {
	case <-j.done:
	case <-time.After(10 * time.Second):
	case <-c.Request().Context().Done():
	}
	return c.JSON(http.StatusOK, js.viewOf(j))
}

// stop cancels the jobs still running and lets no new one start, for Close.
func (js *jobs[V]) stop() {
	js.mu.Lock()
	js.closed = true
	recent := append([]*bgJob[V]{}, js.recent...)
	js.mu.Unlock()
	for _, j := range recent {
		j.cancel()
	}
}
