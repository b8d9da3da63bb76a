package api

import "strings"

// FillQueryPool takes every slot of the query pool, as if that many queries were running.
func (s *Server) FillQueryPool() (release func()) {
	for range cap(s.sem) {
		s.sem <- struct{}{}
	}
	return func() {
		for range cap(s.sem) {
			<-s.sem
		}
	}
}

// Routes lists the served routes as "METHOD /path" with OpenAPI path templates.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.echo.Routes() {
		out = append(out, r.Method+" "+openAPIPath(r.Path))
	}
	return out
}

func openAPIPath(p string) string {
	if p == "/static/*" { // the web page's assets
		return "/static/{file}"
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if name, ok := strings.CutPrefix(part, ":"); ok {
			parts[i] = "{" + name + "}"
		}
	}
	return strings.Join(parts, "/")
}

// QueriesRunning is how many slots of the query pool are taken.
func (s *Server) QueriesRunning() int { return len(s.sem) }

// InFlight is how many requests are being handled (computing or writing their answer).
func (s *Server) InFlight() int64 { return s.inflight.Load() }
