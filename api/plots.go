package api

import (
	"context"

	"github.com/spotlight-lm/spotlight/query"
)

// plotGenerate runs the generation of one timeline plot of package api/web
// (GET /v1/plots/timeline.{svg,png}) with the query pool and timeout of POST /v1/generate.
func (s *Server) plotGenerate(ctx context.Context, req query.PlotRequest) (*query.Answer, error) {
	return s.query(ctx, job{
		estimate: func(e *query.Engine) (int64, error) { return e.EstimatePlot(req) },
		run:      func(ctx context.Context, e *query.Engine) (*query.Answer, error) { return e.Plot(ctx, req) },
	}, nil)
}
