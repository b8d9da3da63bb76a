package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/spotlight-lm/spotlight/plots"
	"github.com/spotlight-lm/spotlight/query"
)

// Generate runs the generation of a plot request through the query engine (the engine
// validates the request as it does for POST /v1/generate).
type Generate func(ctx context.Context, req query.PlotRequest) (*query.Answer, error)

// ParsePlotParams reads the query parameters of GET /v1/plots/timeline.{svg,png} into a
// plot request, over the defaults of query.DefaultPlot (a parameter absent, empty or 0
// keeps its default):
//
//	prompt       the prompt (required)
//	token        index of the generated token to plot (default 0, the first)
//	tokens       tokens to generate (default token+1)
//	layer        the layer whose memory is plotted (default out)
//	bins         timeline bins over training steps (default 40)
//	rank_by      attention|contribution (default contribution; only the listing depends on it)
//	top_k        training tokens listed per layer (default 1: the plot needs none)
//	temperature  sampling temperature (default 0, greedy)
//	seed         sampling seed (default 0)
//
// It only checks that numbers are numbers; the engine checks the values.
func ParsePlotParams(v url.Values) (query.PlotRequest, *ParamError) {
	p := query.DefaultPlot()
	p.Prompt = v.Get("prompt")
	ints := []struct {
		name string
		dst  *int
	}{{"token", &p.Token}, {"tokens", &p.Tokens}, {"bins", &p.Bins}, {"top_k", &p.TopK}}
	for _, f := range ints {
		if s := v.Get(f.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return p, &ParamError{Code: "bad_request", Field: f.name, Msg: fmt.Sprintf("%s must be an integer, got %q", f.name, s)}
			}
			*f.dst = n
		}
	}
	if s := v.Get("layer"); s != "" {
		p.Layer = s
	}
	if s := v.Get("rank_by"); s != "" {
		p.RankBy = s
	}
	if s := v.Get("temperature"); s != "" {
		t, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return p, &ParamError{Code: "bad_request", Field: "temperature", Msg: fmt.Sprintf("temperature must be a number, got %q", s)}
		}
		p.Temperature = &t
	}
	if s := v.Get("seed"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return p, &ParamError{Code: "bad_request", Field: "seed", Msg: fmt.Sprintf("seed must be a non-negative integer, got %q", s)}
		}
		p.Seed = n
	}
	return p, nil
}

// TimelinePlot runs p through gen and draws the chosen token's timeline for p.Layer.
func TimelinePlot(ctx context.Context, gen Generate, p query.PlotRequest, format string) ([]byte, error) {
	ans, err := gen(ctx, p)
	if err != nil {
		return nil, err
	}
	if p.Token >= len(ans.Tokens) {
		return nil, &ParamError{Code: "invalid_input", Field: "token", Msg: fmt.Sprintf("token %d was not generated (the answer has %d tokens)", p.Token, len(ans.Tokens))}
	}
	tok := ans.Tokens[p.Token]
	la, ok := tok.Layers[p.Layer]
	if !ok {
		return nil, &ParamError{Code: "invalid_input", Field: "layer", Msg: fmt.Sprintf("layer %q is not in the answer", p.Layer)}
	}
	return plots.Timeline(la.Timeline, Title(tok, p.Layer, ans.Step), format)
}

// Title names a token's timeline chart.
func Title(tok query.TokenAnswer, layer string, step int) string {
	return fmt.Sprintf("token %d %s (p=%.3f) · layer %s · model at step %d", tok.Index, strconv.Quote(tok.Token), tok.Prob, layer, step)
}

// ParamError is a caller's mistake in the plot parameters (HTTP 400). Code follows the
// API's: bad_request for a malformed value, invalid_input for one out of range.
type ParamError struct{ Code, Field, Msg string }

func (e *ParamError) Error() string { return e.Msg }

// RegisterPlots mounts GET /v1/plots/timeline.svg and GET /v1/plots/timeline.png on e.
// Errors from gen are returned to echo, so the server's error handler maps them as it does
// for POST /v1/generate; bad plot parameters are answered here with 400.
func RegisterPlots(e *echo.Echo, gen Generate) {
	for _, format := range []string{"svg", "png"} {
		e.GET("/v1/plots/timeline."+format, PlotHandler(gen, format))
	}
}

// PlotHandler answers one timeline format.
func PlotHandler(gen Generate, format string) echo.HandlerFunc {
	ctype := map[string]string{"svg": "image/svg+xml", "png": "image/png"}[format]
	return func(c echo.Context) error {
		p, perr := ParsePlotParams(c.QueryParams())
		if perr != nil {
			writeParamError(c.Response(), perr)
			return nil
		}
		b, err := TimelinePlot(c.Request().Context(), gen, p, format)
		if pe, ok := err.(*ParamError); ok {
			writeParamError(c.Response(), pe)
			return nil
		}
		if err != nil {
			return err
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.Blob(http.StatusOK, ctype, b)
	}
}

func writeParamError(w http.ResponseWriter, e *ParamError) {
	writeErrorField(w, http.StatusBadRequest, e.Code, e.Msg, e.Field)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeErrorField(w, status, code, msg, "")
}

// writeErrorField writes the API's error body: {"error": {"code", "message", "field"}}.
func writeErrorField(w http.ResponseWriter, status int, code, msg, field string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field,omitempty"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message, body.Error.Field = code, strings.TrimSpace(msg), field
	_ = json.NewEncoder(w).Encode(body)
}
