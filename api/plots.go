package api

import (
	"context"

	"github.com/spotlight-lm/spotlight/query"
)

// plotGenerate runs the generation of one timeline plot of package api/web
// (GET /v1/plots/timeline.{svg,png}) with the query pool and timeout of POST /v1/generate.
func (s *Server) plotGenerate(ctx context.Context, req query.PlotRequest) (*query.Answer, error) {
	return s.query(ctx, func(ctx context.Context, e *query.Engine) (*query.Answer, error) {
		if err := s.withinBudget(e.EstimatePlot(req)); err != nil {
			return nil, err
		}
		return e.Plot(ctx, req)
	}, nil)
}
