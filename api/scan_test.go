package api_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/query"
)

// TestScanModes: over HTTP, a pruned answer's totals equal the full answer's (whose α are
// float32) and say what they omit and read; both validate against the OpenAPI document; a
// bad scan mode is a 400 naming the field.
func TestScanModes(t *testing.T) {
	s := sharedServer(t)
	for _, tc := range []struct{ path, body string }{
		{"/v1/generate", `{"prompt":"The light ","tokens":3,"seed":2%s}`},
		{"/v1/attribute", `{"text":"The light of","rank_by":"logp","steps":[2,15]%s}`},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/v1/"), func(t *testing.T) {
			rf := s.call(t, "POST", tc.path, strings.Replace(tc.body, "%s", "", 1))
			rp := s.call(t, "POST", tc.path, strings.Replace(tc.body, "%s", `,"scan":"pruned"`, 1))
			full, pruned := decode[query.Answer](t, rf), decode[query.Answer](t, rp)
			if rf.Status != 200 || rp.Status != 200 || full.Text != pruned.Text {
				t.Fatalf("got %d %d: %q vs %q", rf.Status, rp.Status, full.Text, pruned.Text)
			}
			for i, ft := range full.Tokens {
				for name, f := range ft.Layers {
					p := pruned.Tokens[i].Layers[name]
					if d, w := p.DualCheck.Dual, f.DualCheck.Dual; math.Abs(d-w) > 1e-5*math.Abs(w) || p.W0Term != f.W0Term || p.BiasTerm != f.BiasTerm {
						t.Errorf("token %d %s: pruned dual %.12g w0 %g bias %g; full %.12g %g %g", i, name, d, p.W0Term, p.BiasTerm, w, f.W0Term, f.BiasTerm)
					}
					if p.Scan.Mode != "pruned" || !slices.Contains(p.Scan.Omitted, "positive_total") || p.PositiveTotal != nil ||
						f.Scan.Mode != "full" || len(f.Scan.Omitted) != 0 || f.PositiveTotal == nil {
						t.Errorf("%s: scan %+v / %+v", name, p.Scan, f.Scan)
					}
					if f.Scan.BytesTotal == 0 || f.Scan.BytesRead == 0 || f.Scan.BlocksTotal != 20 || p.Scan.BytesTotal != f.Scan.BytesTotal {
						t.Errorf("%s: read %+v / %+v", name, p.Scan.ScanStats, f.Scan.ScanStats)
					}
				}
			}
		})
	}
	for _, path := range []string{"/v1/generate", "/v1/attribute"} {
		t.Run("ErrScan"+path, func(t *testing.T) {
			body := `{"text":"The light","scan":"fast"}`
			if path == "/v1/generate" {
				body = `{"prompt":"The ","scan":"fast"}`
			}
			r := s.call(t, "POST", path, body)
			e := decode[struct {
				Error struct{ Code, Message, Field string }
			}](t, r)
			if r.Status != 400 || e.Error.Field != "scan" || !strings.Contains(e.Error.Message, `unknown scan mode "fast" (known: full, pruned)`) {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
}
