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
	"github.com/spotlight-lm/spotlight/query"
)

const cfText = "the light of the sun"

// waitJob polls a counterfactual job until it leaves queued and running.
func waitJob(t *testing.T, s *testServer, id string) api.CounterfactualJob {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := s.call(t, "GET", "/v1/counterfactual/"+id, "")
		if r.Status != http.StatusOK {
			t.Fatalf("GET job: %d %s", r.Status, r.Body)
		}
		j := decode[api.CounterfactualJob](t, r)
		if j.Status != api.JobQueued && j.Status != api.JobRunning {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s at %.2f", id, j.Status, j.Progress)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCounterfactualTopK(t *testing.T) {
	s := sharedServer(t)
	r := s.call(t, "POST", "/v1/counterfactual", fmt.Sprintf(`{"text":%q,"position":12,"top_k":10,"rank_by":"contribution"}`, cfText))
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	j := decode[api.CounterfactualJob](t, r)
	if j.ID == "" || (j.Status != api.JobQueued && j.Status != api.JobRunning) || len(j.Removed) != 10 || j.Token != " " {
		t.Fatalf("started: %+v", j)
	}
	j = waitJob(t, s, j.ID)
	res := j.Result
	if j.Status != api.JobDone || res == nil || j.Progress != 1 {
		t.Fatalf("finished: %+v", j)
	}
	for name, p := range map[string][2]float64{"served": {res.Prob, res.LogP}, "predicted": {res.PredictedProb, res.PredictedLogP},
		"real": {res.RealProb, res.RealLogP}} {
		if !(p[0] > 0 && p[0] < 1) || math.Abs(math.Log(p[0])-p[1]) > 1e-12 {
			t.Errorf("%s: prob %g, log p %g", name, p[0], p[1])
		}
	}
	if res.RealProb == res.Prob || res.Seconds <= 0 || res.FromStep != 0 || res.ReplayedSteps != j.Step {
		t.Errorf("result: %+v", res)
	}
	t.Logf("p %.5g; final weights minus the top 10's updates %.5g; retrained without them %.5g (%d steps, %.2fs)",
		res.Prob, res.PredictedProb, res.RealProb, res.ReplayedSteps, res.Seconds)
}

func TestCounterfactualBadRequests(t *testing.T) {
	s := sharedServer(t)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown id", "GET", "/v1/counterfactual/cf-999999", "", 404, "not_found", ""},
		{"cancel unknown id", "DELETE", "/v1/counterfactual/nope", "", 404, "not_found", ""},
		{"position 0", "POST", "/v1/counterfactual", `{"text":"abc","position":0,"top_k":3}`, 400, "invalid_input", "position"},
		{"position past the text", "POST", "/v1/counterfactual", `{"text":"abc","position":3,"top_k":3}`, 400, "invalid_input", "position"},
		{"nothing to remove", "POST", "/v1/counterfactual", `{"text":"abc","position":1}`, 400, "invalid_input", "top_k"},
		{"empty tokens", "POST", "/v1/counterfactual", `{"text":"abc","position":1,"tokens":[]}`, 400, "invalid_input", "top_k"},
		{"both", "POST", "/v1/counterfactual", `{"text":"abc","position":1,"top_k":2,"tokens":[{"step":1,"row":0,"pos":0}]}`, 400, "invalid_input", "top_k"},
		{"token past the run", "POST", "/v1/counterfactual", `{"text":"abc","position":1,"tokens":[{"step":21,"row":0,"pos":0}]}`, 400, "invalid_input", "tokens"},
		{"row past the batch", "POST", "/v1/counterfactual", `{"text":"abc","position":1,"tokens":[{"step":1,"row":4,"pos":0}]}`, 400, "invalid_input", "tokens"},
		{"unknown character", "POST", "/v1/counterfactual", `{"text":"ab\u0001","position":1,"top_k":1}`, 400, "invalid_input", "text"},
		{"unknown field", "POST", "/v1/counterfactual", `{"text":"abc","position":1,"top_k":1,"k":2}`, 400, "bad_request", ""},
		{"bad rank", "POST", "/v1/counterfactual", `{"text":"abc","position":1,"top_k":1,"rank_by":"loudness"}`, 400, "invalid_input", "rank_by"},
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

// One job at a time; a query still runs meanwhile; DELETE cancels.
func TestCounterfactualOneAtATime(t *testing.T) {
	dir, tr, err := datadir.Create(filepath.Join(t.TempDir(), "data"), tinyConfig(300), corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dir.Store.SetKeepEvery(0) // only step 0 kept: removing a token of step 1 replays all 300
	if err := tr.Train(context.Background(), dir.Store, 300, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	s := MustServe(t, dir, api.Options{})
	info := decode[api.ModelInfo](t, s.call(t, "GET", "/v1/model", ""))
	if len(info.KeptCheckpoints) != 1 || info.KeptCheckpoints[0].Step != 0 || info.KeptBytes != info.KeptCheckpoints[0].Bytes || info.KeptBytes <= 0 {
		t.Errorf("model info: kept %+v, %d bytes", info.KeptCheckpoints, info.KeptBytes)
	}
	body := fmt.Sprintf(`{"text":%q,"position":5,"tokens":[{"step":1,"row":0,"pos":0}]}`, cfText)
	r := s.call(t, "POST", "/v1/counterfactual", body)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	first := decode[api.CounterfactualJob](t, r)
	r = s.call(t, "POST", "/v1/counterfactual", body)
	if code, _ := r.errorCode(t); r.Status != http.StatusTooManyRequests || code != "busy" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second job: %d %s, Retry-After %q", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if r := s.call(t, "POST", "/v1/attribute", fmt.Sprintf(`{"text":%q,"top_k":2}`, cfText)); r.Status != http.StatusOK {
		t.Errorf("a query during the retrain: %d %s", r.Status, r.Body)
	}
	r = s.call(t, "DELETE", "/v1/counterfactual/"+first.ID, "")
	if j := decode[api.CounterfactualJob](t, r); r.Status != http.StatusOK || j.Status != api.JobCancelled || j.Result != nil {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	// The slot is free again; this one runs to the end.
	r = s.call(t, "POST", "/v1/counterfactual", body)
	if r.Status != http.StatusAccepted {
		t.Fatalf("after cancel: %d %s", r.Status, r.Body)
	}
	j := waitJob(t, s, decode[api.CounterfactualJob](t, r).ID)
	if j.Status != api.JobDone || j.Result.ReplayedSteps != 300 || j.Result.FromStep != 0 {
		t.Errorf("second job: %+v %+v", j, j.Result)
	}
	if got := s.call(t, "GET", "/v1/counterfactual/"+first.ID, ""); decode[api.CounterfactualJob](t, got).Status != api.JobCancelled {
		t.Errorf("cancelled job now: %s", got.Body)
	}
}

// A token named by prompt and generated index is the one /v1/generate produced: the job
// asks about the same text and position, and answers what the text form answers.
func TestCounterfactualFromPrompt(t *testing.T) {
	s := sharedServer(t)
	const prompt, index = "the light", 4
	for _, sampling := range []string{`"temperature":0.8,"seed":3`, `"temperature":0`, `"seed":5`} {
		t.Run(sampling, func(t *testing.T) {
			gen := decode[query.Answer](t, s.call(t, "POST", "/v1/generate", fmt.Sprintf(`{"prompt":%q,"tokens":8,"top_k":1,%s}`, prompt, sampling)))
			text, position := prompt+string([]rune(gen.Text)[:index+1]), len(prompt)+index
			remove := `"tokens":[{"step":1,"row":0,"pos":0},{"step":7,"row":2,"pos":3}]`
			r := s.call(t, "POST", "/v1/counterfactual", fmt.Sprintf(`{"prompt":%q,"generated":%d,%s,%s}`, prompt, index, sampling, remove))
			if r.Status != http.StatusAccepted {
				t.Fatalf("POST by prompt: %d %s", r.Status, r.Body)
			}
			byPrompt := waitJob(t, s, decode[api.CounterfactualJob](t, r).ID)
			if byPrompt.Text != text || byPrompt.Position != position || byPrompt.Token != string([]rune(gen.Text)[index]) {
				t.Fatalf("by prompt: text %q position %d token %q, want %q %d", byPrompt.Text, byPrompt.Position, byPrompt.Token, text, position)
			}
			r = s.call(t, "POST", "/v1/counterfactual", fmt.Sprintf(`{"text":%q,"position":%d,%s}`, text, position, remove))
			if r.Status != http.StatusAccepted {
				t.Fatalf("POST by text: %d %s", r.Status, r.Body)
			}
			byText := waitJob(t, s, decode[api.CounterfactualJob](t, r).ID)
			a, b := byPrompt.Result, byText.Result
			if byPrompt.Status != api.JobDone || byText.Status != api.JobDone || a.Prob != b.Prob || a.PredictedProb != b.PredictedProb ||
				a.RealProb != b.RealProb || a.ReplayedSteps != b.ReplayedSteps {
				t.Errorf("by prompt %+v, by text %+v", a, b)
			}
		})
	}
	for _, tc := range []struct{ name, body, field string }{
		{"text and prompt", `{"text":"abc","position":1,"prompt":"the","top_k":1}`, "text"},
		{"position and prompt", `{"position":1,"prompt":"the","top_k":1}`, "text"},
		{"temperature without prompt", `{"text":"abc","position":1,"temperature":0.5,"top_k":1}`, "prompt"},
		{"generated out of range", `{"prompt":"the","generated":5000,"top_k":1}`, "generated"},
		{"empty text", `{"text":"","position":1,"top_k":1}`, "text"},
	} {
		r := s.call(t, "POST", "/v1/counterfactual", tc.body)
		if code, _ := r.errorCode(t); r.Status != http.StatusBadRequest || code != "invalid_input" || !strings.Contains(string(r.Body), `"field":"`+tc.field+`"`) {
			t.Errorf("%s: %d %s, want 400 invalid_input on %s", tc.name, r.Status, r.Body, tc.field)
		}
	}
}
