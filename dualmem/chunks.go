package dualmem

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// sumChunkSteps is how many consecutive steps one chunk sum covers. A timeline of 20 bins
// over 31K steps (16M tokens) then takes ~490 chunk sums and at most a few thousand
// per-step records instead of all 31K, each a DOut×DIn matrix.
const sumChunkSteps = 64

// chunkSums are Σ s_t·G_t [DOut, DIn] and Σ K_t [DIn] over each run of n steps from step
// index 0 (the last, shorter run has none), from the per-step aggregates: what SumsSpans
// takes for the whole chunks inside a span. err is the first step whose aggregates failed;
// then no chunk is used.
type chunkSums struct {
	n, count int
	g, k     []float64
	err      error
	dd, din  int
}

// at is chunk c's Σ s_t·G_t and Σ K_t.
func (cs *chunkSums) at(c int) (g, k []float64) {
	return cs.g[c*cs.dd : (c+1)*cs.dd], cs.k[c*cs.din : (c+1)*cs.din]
}

// chunks builds the chunk sums on first use: one pass over the aggregates, 1/n of their
// size on the heap.
func (s *Scanner) chunks() *chunkSums {
	s.chunkOnce.Do(func() { s.csums = s.buildChunks() })
	return s.csums
}

// PrepareSums builds what SumsSpans needs now rather than on first use (nothing without
// aggregates).
func (s *Scanner) PrepareSums() {
	if s.HasAggregates() == nil {
		s.chunks()
	}
}

func (s *Scanner) buildChunks() *chunkSums {
	n := s.chunkSteps
	if n <= 0 {
		n = sumChunkSteps
	}
	dd, din := s.DOut*s.DIn, s.DIn
	count := len(s.Mem.Steps) / n
	cs := &chunkSums{n: n, count: count, dd: dd, din: din, g: make([]float64, count*dd), k: make([]float64, count*din)}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(count, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := int(next.Add(1) - 1); c < count; c = int(next.Add(1) - 1) {
				g, k := cs.at(c)
				for t := c * n; t < (c+1)*n; t++ {
					gt, kt, _, err := s.Mem.agg.step(t, s.Mem.Steps[t].Tokens())
					if err != nil {
						mu.Lock()
						cs.err = cmpOr(cs.err, err)
						mu.Unlock()
						next.Store(int64(count))
						return
					}
					f := s.SW[t]
					for i, v := range gt {
						g[i] += f * v
					}
					for i, v := range kt {
						k[i] += v
					}
				}
			}
		}()
	}
	wg.Wait()
	if cs.err != nil {
		cs.g, cs.k = nil, nil
	}
	return cs
}
