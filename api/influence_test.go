package api_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
)

// waitInfluence polls an influence job until it leaves queued and running.
func waitInfluence(t *testing.T, s *testServer, id string) api.InfluenceJob {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r := s.call(t, "GET", "/v1/influence/"+id, "")
		if r.Status != http.StatusOK {
			t.Fatalf("GET job: %d %s", r.Status, r.Body)
		}
		j := decode[api.InfluenceJob](t, r)
		if j.Status != api.JobQueued && j.Status != api.JobRunning {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s at %.2f", id, j.Status, j.Progress)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The job's numbers are the data directory's; the same question again is answered from
// the cache at once, whatever its top_k.
func TestInfluenceJob(t *testing.T) {
	s := sharedServer(t)
	const pos = 9 // a position no other test asks about, so the run is not cached yet
	r := s.call(t, "POST", "/v1/influence", fmt.Sprintf(`{"text":%q,"position":%d,"top_k":5}`, cfText, pos))
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	j := decode[api.InfluenceJob](t, r)
	if !strings.HasPrefix(j.ID, "inf-") || (j.Status != api.JobQueued && j.Status != api.JobRunning) || j.Result != nil ||
		j.Text != cfText || j.Position != pos || j.TopK != 5 || j.Step != 20 || j.Token != string(cfText[pos]) {
		t.Fatalf("started: %+v", j)
	}
	j = waitInfluence(t, s, j.ID)
	res := j.Result
	if j.Status != api.JobDone || res == nil || j.Progress != 1 || j.Token != string(cfText[pos]) {
		t.Fatalf("finished: %+v", j)
	}
	if res.Checkpoint != 20 || res.Scored != 20*4*16 || len(res.Top) != 5 || len(res.Supporting) != 5 || len(res.Opposing) != 5 ||
		res.Cached || res.Seconds <= 0 || !(res.Prob > 0 && res.Prob < 1) || math.Abs(math.Exp(-res.Loss)-res.Prob) > 1e-12 {
		t.Fatalf("result: %+v", res)
	}
	var sum float64
	for i, e := range res.Top {
		sum -= e.Influence
		if e.DeltaLoss != -e.Influence || e.Target == "" || e.Context == "" || (i > 0 && math.Abs(e.Influence) > math.Abs(res.Top[i-1].Influence)) {
			t.Errorf("top[%d] = %+v", i, e)
		}
	}
	if math.Abs(res.PredictedDeltaLoss-sum) > 1e-12 || res.Supporting[0].Influence >= 0 || res.Opposing[0].Influence <= 0 {
		t.Errorf("predicted Δloss %g, want −Σ influence = %g; supporting[0] %g, opposing[0] %g",
			res.PredictedDeltaLoss, sum, res.Supporting[0].Influence, res.Opposing[0].Influence)
	}
	want, err := shared.dir.Influence(context.Background(), 20, cfText, pos, 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range want.Top {
		g := res.Top[i]
		if g.Step != e.Step || g.Row != e.Row || g.Pos != e.Pos || g.Offset != e.Offset || g.Context != e.Context || g.Influence != e.Score {
			t.Errorf("top[%d] = %+v, the data directory's %+v", i, g, e)
		}
	}
	t.Logf("influence of %d training tokens on %q at %d: %.2fs; top %+v", res.Scored, cfText, pos, res.Seconds, res.Top[0])

	r = s.call(t, "POST", "/v1/influence", fmt.Sprintf(`{"text":%q,"position":%d,"top_k":3}`, cfText, pos))
	again := decode[api.InfluenceJob](t, r)
	if r.Status != http.StatusOK || again.Status != api.JobDone || again.ID == j.ID || again.Result == nil || !again.Result.Cached ||
		again.Result.Seconds != 0 || len(again.Result.Top) != 3 || again.Result.Top[2] != res.Top[2] || again.Result.Loss != res.Loss {
		t.Fatalf("again: %d %s", r.Status, r.Body)
	}
	if got := decode[api.InfluenceJob](t, s.call(t, "GET", "/v1/influence/"+again.ID, "")); got.Status != api.JobDone || !got.Result.Cached {
		t.Errorf("GET the cached job: %+v", got)
	}
	if d := s.call(t, "DELETE", "/v1/influence/"+j.ID, ""); d.Status != http.StatusOK || decode[api.InfluenceJob](t, d).Status != api.JobDone {
		t.Errorf("DELETE a finished job: %d %s", d.Status, d.Body)
	}
}

func TestInfluenceBadRequests(t *testing.T) {
	s := sharedServer(t)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown id", "GET", "/v1/influence/inf-999999", "", 404, "not_found", ""},
		{"cancel unknown id", "DELETE", "/v1/influence/nope", "", 404, "not_found", ""},
		{"empty text", "POST", "/v1/influence", `{"text":"","position":1}`, 400, "invalid_input", "text"},
		{"no text", "POST", "/v1/influence", `{"top_k":3}`, 400, "invalid_input", "text"},
		{"position 0", "POST", "/v1/influence", `{"text":"abc","position":0}`, 400, "invalid_input", "position"},
		{"position past the text", "POST", "/v1/influence", `{"text":"abc","position":3}`, 400, "invalid_input", "position"},
		{"negative position", "POST", "/v1/influence", `{"text":"abc","position":-1}`, 400, "invalid_input", "position"},
		{"unknown character", "POST", "/v1/influence", `{"text":"ab\u0001","position":1}`, 400, "invalid_input", "text"},
		{"top_k negative", "POST", "/v1/influence", `{"text":"abc","position":1,"top_k":-1}`, 400, "invalid_input", "top_k"},
		{"top_k too big", "POST", "/v1/influence", `{"text":"abc","position":1,"top_k":1001}`, 400, "invalid_input", "top_k"},
		{"unknown field", "POST", "/v1/influence", `{"text":"abc","position":1,"k":2}`, 400, "bad_request", "k"},
		{"text and prompt", "POST", "/v1/influence", `{"text":"abc","position":1,"prompt":"the"}`, 400, "invalid_input", "text"},
		{"generated without prompt", "POST", "/v1/influence", `{"text":"abc","position":1,"generated":2}`, 400, "invalid_input", "prompt"},
		{"seed without prompt", "POST", "/v1/influence", `{"text":"abc","position":1,"seed":2}`, 400, "invalid_input", "prompt"},
		{"generated negative", "POST", "/v1/influence", `{"prompt":"the","generated":-1}`, 400, "invalid_input", "generated"},
		{"generated too far", "POST", "/v1/influence", `{"prompt":"the","generated":1024}`, 400, "invalid_input", "generated"},
		{"bad temperature", "POST", "/v1/influence", `{"prompt":"the","temperature":11}`, 400, "invalid_input", "temperature"},
		{"prompt character", "POST", "/v1/influence", `{"prompt":"th\u0001"}`, 400, "invalid_input", "prompt"},
		{"not JSON", "POST", "/v1/influence", `{"text":`, 400, "bad_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.call(t, tc.method, tc.path, tc.body)
			code, msg := r.errorCode(t)
			if r.Status != tc.status || code != tc.code {
				t.Fatalf("%d %s (%s), want %d %s", r.Status, code, msg, tc.status, tc.code)
			}
			if tc.field != "" && !strings.Contains(string(r.Body), `"field":"`+tc.field+`"`) {
				t.Errorf("field: %s, want %s", r.Body, tc.field)
			}
		})
	}
}

// One influence job at a time; queries and a counterfactual job still run meanwhile;
// DELETE cancels and frees the slot; bad requests meanwhile are 400s, not 429s.
func TestInfluenceOneAtATime(t *testing.T) {
	dir, tr, err := datadir.Create(filepath.Join(t.TempDir(), "data"), tinyConfig(200), corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Train(context.Background(), dir.Store, 200, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	s := MustServe(t, dir, api.Options{})
	body := fmt.Sprintf(`{"text":%q,"position":5}`, cfText)
	r := s.call(t, "POST", "/v1/influence", body)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	first := decode[api.InfluenceJob](t, r)
	r = s.call(t, "POST", "/v1/influence", fmt.Sprintf(`{"text":%q,"position":6}`, cfText))
	if code, _ := r.errorCode(t); r.Status != http.StatusTooManyRequests || code != "busy" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second job: %d %s, Retry-After %q", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if r := s.call(t, "POST", "/v1/influence", `{"text":"abc","position":7}`); r.Status != http.StatusBadRequest {
		t.Errorf("a bad request during the run: %d %s", r.Status, r.Body)
	}
	if r := s.call(t, "POST", "/v1/attribute", fmt.Sprintf(`{"text":%q,"top_k":2}`, cfText)); r.Status != http.StatusOK {
		t.Errorf("a query during the run: %d %s", r.Status, r.Body)
	}
	if s.QueriesRunning() != 0 {
		t.Errorf("%d query slots taken during the run", s.QueriesRunning())
	}
	r = s.call(t, "POST", "/v1/counterfactual", fmt.Sprintf(`{"text":%q,"position":5,"tokens":[{"step":200,"row":0,"pos":0}]}`, cfText))
	if r.Status != http.StatusAccepted {
		t.Errorf("a counterfactual job during the run: %d %s", r.Status, r.Body)
	}
	time.Sleep(100 * time.Millisecond) // progress counts reversed steps: it stays 0 while the run replays forward
	if j := decode[api.InfluenceJob](t, s.call(t, "GET", "/v1/influence/"+first.ID, "")); j.Status != api.JobRunning || j.Progress < 0 || j.Progress >= 1 {
		t.Errorf("running: %s at %g", j.Status, j.Progress)
	}
	r = s.call(t, "DELETE", "/v1/influence/"+first.ID, "")
	if j := decode[api.InfluenceJob](t, r); r.Status != http.StatusOK || j.Status != api.JobCancelled || j.Result != nil {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	// The slot is free again, and the cancelled run left nothing in the cache: this one runs.
	r = s.call(t, "POST", "/v1/influence", body)
	if r.Status != http.StatusAccepted {
		t.Fatalf("after cancel: %d %s", r.Status, r.Body)
	}
	j := waitInfluence(t, s, decode[api.InfluenceJob](t, r).ID)
	if j.Status != api.JobDone || j.Result.Cached || j.Result.Scored != 200*4*16 {
		t.Fatalf("second job: %+v %+v", j, j.Result)
	}
	t.Logf("influence on a %d-step tiny model (d=16, batch 4, ctx 16): %.2fs, snapshots %v", j.Result.Checkpoint, j.Result.Seconds, j.Result.Snapshots)
	if got := s.call(t, "GET", "/v1/influence/"+first.ID, ""); decode[api.InfluenceJob](t, got).Status != api.JobCancelled {
		t.Errorf("cancelled job now: %s", got.Body)
	}
}

// rank_by influence on a counterfactual removes the influence run's top k supporting
// tokens, predicts from the memory and from the influence, and retrains without them; the
// run is then cached for /v1/influence, which names the same tokens. A token named by
// prompt and generated index asks the same question as its text.
func TestCounterfactualRankByInfluence(t *testing.T) {
	s := sharedServer(t)
	const prompt, index = "the light", 3
	r := s.call(t, "POST", "/v1/counterfactual", fmt.Sprintf(`{"prompt":%q,"generated":%d,"seed":7,"top_k":4,"rank_by":"influence"}`, prompt, index))
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	j := waitJob(t, s, decode[api.CounterfactualJob](t, r).ID)
	res := j.Result
	if j.Status != api.JobDone || res == nil || len(j.Removed) != 4 || res.InfluencePredictedLogP == nil ||
		!(res.RealProb > 0 && res.RealProb < 1) || !(res.PredictedProb > 0 && res.PredictedProb < 1) || res.ReplayedSteps != 20-res.FromStep {
		t.Fatalf("job: %+v %+v", j, res)
	}
	r = s.call(t, "POST", "/v1/influence", fmt.Sprintf(`{"prompt":%q,"generated":%d,"seed":7,"top_k":4}`, prompt, index))
	inf := decode[api.InfluenceJob](t, r)
	if r.Status != http.StatusOK || inf.Status != api.JobDone || !inf.Result.Cached || inf.Text != j.Text || inf.Position != j.Position {
		t.Fatalf("influence of the same token: %d %s", r.Status, r.Body)
	}
	var delta float64
	for i, e := range inf.Result.Supporting {
		delta -= e.Influence
		if got := j.Removed[i]; got.Step != e.Step || got.Row != e.Row || got.Pos != e.Pos {
			t.Errorf("removed[%d] = %+v, supporting %+v", i, got, e)
		}
	}
	if math.Abs(*res.InfluencePredictedLogP-(res.LogP-delta)) > 1e-12 || delta <= 0 {
		t.Errorf("influence's predicted log p %g, want %g − %g", *res.InfluencePredictedLogP, res.LogP, delta)
	}
	t.Logf("log p %.4f; removing the top 4 by influence: memory predicts %.4f, influence %.4f, retrained %.4f",
		res.LogP, res.PredictedLogP, *res.InfluencePredictedLogP, res.RealLogP)
	if r := s.call(t, "POST", "/v1/counterfactual", `{"text":"abc","position":1,"top_k":1001,"rank_by":"influence"}`); r.Status != http.StatusBadRequest {
		t.Errorf("top_k 1001 by influence: %d %s", r.Status, r.Body)
	}
}
