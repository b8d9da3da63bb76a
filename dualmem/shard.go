package dualmem

import (
	"fmt"
	"math"
)

// A memory split by training-token range answers a query exactly from its parts. Each part
// scans its own range (ScanOptions.From/To on one machine, or its own step range elsewhere)
// under the whole run's dual form — the step scales depend on the final step, so every part
// is built from the same Meta and step list — and reports hit indices in the whole memory's
// numbering. Merge then adds the sums and keeps the best k of the parts' top lists: the
// union's top k is among them, since each part's list holds its range's k best.

// Merge combines scans of disjoint token ranges, each the []Result of one Scan of the same
// queries with the same TopK k, into the []Result a scan of their union gives. W0Term and
// BiasTerm do not depend on the range; parts that disagree on them (other queries, another
// checkpoint) are an error.
func Merge(k int, parts ...[]Result) ([]Result, error) {
	if len(parts) == 0 {
		return nil, nil
	}
	if k < 1 {
		return nil, fmt.Errorf("dualmem: merge: top-k %d, want at least 1", k)
	}
	Q := len(parts[0])
	out := make([]Result, Q)
	for qi := range out {
		first := &parts[0][qi]
		r := &out[qi]
		r.W0Term, r.BiasTerm = first.W0Term, first.BiasTerm
		r.StepAlpha = make([]float64, len(first.StepAlpha))
		r.StepAbsAlpha = make([]float64, len(first.StepAbsAlpha))
		r.StepContribution = make([]float64, len(first.StepContribution))
		if first.GroupAlpha != nil {
			r.GroupAlpha = make([]float64, len(first.GroupAlpha))
			r.GroupContribution = make([]float64, len(first.GroupContribution))
		}
		att, con := &hitHeap{abs: true}, &hitHeap{}
		for pi, part := range parts {
			if len(part) != Q {
				return nil, fmt.Errorf("dualmem: merge: part %d answers %d queries, part 0 %d", pi, len(part), Q)
			}
			p := &part[qi]
			if !sameTerm(p.W0Term, r.W0Term) || !sameTerm(p.BiasTerm, r.BiasTerm) {
				return nil, fmt.Errorf("dualmem: merge: part %d query %d has other initial-weight or bias terms (%g, %g against %g, %g): not the same query and checkpoint",
					pi, qi, p.W0Term, p.BiasTerm, r.W0Term, r.BiasTerm)
			}
			if len(p.StepAlpha) != len(r.StepAlpha) || len(p.GroupAlpha) != len(r.GroupAlpha) {
				return nil, fmt.Errorf("dualmem: merge: part %d query %d has %d steps and %d groups, part 0 %d and %d",
					pi, qi, len(p.StepAlpha), len(p.GroupAlpha), len(r.StepAlpha), len(r.GroupAlpha))
			}
			r.Positive += p.Positive
			r.Negative += p.Negative
			r.AbsTotal += p.AbsTotal
			addTo(r.StepAlpha, p.StepAlpha)
			addTo(r.StepAbsAlpha, p.StepAbsAlpha)
			addTo(r.StepContribution, p.StepContribution)
			addTo(r.GroupAlpha, p.GroupAlpha)
			addTo(r.GroupContribution, p.GroupContribution)
			for _, h := range p.TopAttention {
				att.offer(h, k)
			}
			for _, h := range p.TopContribution {
				con.offer(h, k)
			}
		}
		r.TopAttention, r.TopContribution = att.sorted(), con.sorted()
	}
	return out, nil
}

func addTo(dst, src []float64) {
	for i, v := range src {
		dst[i] += v
	}
}

// sameTerm allows the rounding of a term computed on another machine.
func sameTerm(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
