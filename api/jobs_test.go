package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/spotlight-lm/spotlight/datadir"
)

// callJob runs a store's GET or DELETE handler for id and decodes its answer.
func callJob[V jobView[V]](t *testing.T, h echo.HandlerFunc, method, id string) (V, error) {
	t.Helper()
	rec := httptest.NewRecorder()
	c := echo.New().NewContext(httptest.NewRequest(method, "/v1/jobs/"+id, nil), rec)
	c.SetParamNames("id")
	c.SetParamValues(id)
	var v V
	if err := h(c); err != nil {
		return v, err
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %s: status %d", method, id, rec.Code)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	return v, nil
}

func wantStatus(t *testing.T, err error, status int, msg string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Status != status || e.Message != msg {
		t.Fatalf("got %v, want %d %q", err, status, msg)
	}
}

func TestJobsFileKeepsTheLastJobs(t *testing.T) {
	var js jobs[InfluenceJob]
	var bg sync.WaitGroup
	for i := 1; i <= keptJobs+1; i++ {
		v, err := js.file(InfluenceJob{Status: JobDone, TopK: i}, &bg, nil)
		if err != nil || v.ID != "inf-"+strconv.Itoa(i) {
			t.Fatalf("job %d filed as %q, %v", i, v.ID, err)
		}
	}
	_, err := callJob[InfluenceJob](t, js.get, http.MethodGet, "inf-1")
	wantStatus(t, err, http.StatusNotFound, `no influence job "inf-1" (the last 16 are kept)`)
	v, err := callJob[InfluenceJob](t, js.get, http.MethodGet, "inf-2")
	if err != nil || v.ID != "inf-2" || v.TopK != 2 {
		t.Fatalf("inf-2: %+v, %v", v, err)
	}
	// A finished job filed without a run is answered at once by DELETE, unchanged.
	v, err = callJob[InfluenceJob](t, js.delete, http.MethodDelete, "inf-17")
	if err != nil || v.Status != JobDone || v.TopK != keptJobs+1 {
		t.Fatalf("delete inf-17: %+v, %v", v, err)
	}
}

func TestJobsSlotRunAndStop(t *testing.T) {
	var js jobs[CounterfactualJob]
	stop := make(chan struct{})
	var bg sync.WaitGroup
	busy := "a counterfactual retrain is already running; one runs at a time"
	if err := js.acquire(stop); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, js.acquire(stop), http.StatusTooManyRequests, busy)

	started := make(chan struct{})
	run := func(ctx context.Context, j *bgJob[CounterfactualJob]) {
		js.set(j, func(v *CounterfactualJob) { v.Status, v.Removed = JobRunning, []datadir.TrainToken{{Step: 1}} })
		close(started)
		<-ctx.Done()
		js.set(j, func(v *CounterfactualJob) { v.Status, v.Error = JobCancelled, "cancelled" })
	}
	v, err := js.file(CounterfactualJob{Status: JobQueued}, &bg, run)
	if err != nil || v.ID != "cf-1" || v.Status != JobQueued {
		t.Fatalf("filed %+v, %v", v, err)
	}
	<-started
	j, err := js.find("cf-1")
	if err != nil {
		t.Fatal(err)
	}
	// A view shares nothing with the job: changing it leaves the job as it was.
	got := js.viewOf(j)
	got.Removed[0].Step = 99
	if js.viewOf(j).Removed[0].Step != 1 {
		t.Fatal("a view shares the job's removed tokens")
	}
	wantStatus(t, js.acquire(stop), http.StatusTooManyRequests, busy)

	v, err = callJob[CounterfactualJob](t, js.delete, http.MethodDelete, "cf-1")
	if err != nil || v.Status != JobCancelled || v.Error != "cancelled" {
		t.Fatalf("delete cf-1: %+v, %v", v, err)
	}
	bg.Wait() // the run has returned: the slot is free again
	if err := js.acquire(stop); err != nil {
		t.Fatalf("slot not freed after the run: %v", err)
	}

	// Closing: a job filed with the slot held is refused and frees the slot.
	js.stop()
	_, err = js.file(CounterfactualJob{}, &bg, run)
	wantStatus(t, err, http.StatusServiceUnavailable, "the server is shutting down")
	close(stop)
	wantStatus(t, js.acquire(stop), http.StatusServiceUnavailable, "the server is shutting down")
	if js.busy {
		t.Fatal("a refused job kept the slot")
	}
}
