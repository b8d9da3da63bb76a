package api

import (
	"context"

	"github.com/spotlight-lm/spotlight/query"
)

// plotGenerate runs one generate request for the timeline plots of package api/web
// (GET /v1/plots/timeline.{svg,png}), with the same validation, query pool and timeout
// as POST /v1/generate.
func (s *Server) plotGenerate(ctx context.Context, req query.Request) (*query.Answer, error) {
	sn := s.acquire()
	defer s.release(sn)
	if err := req.Normalize(sn.model.Cfg); err != nil {
		return nil, err
	}
	release, err := s.acquireQuery()
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	ans, err := sn.engine.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	ans.Step = sn.step
	return ans, nil
}
