package dualmem

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestQueueOrder: a seeded queue (its best eighth in a heap, the rest aside) pops every
// node's bound, largest first, with nodes pushed between pops, ties and queues too small to
// split; NaN bounds (whose order no heap keeps) stay in the heap.
func TestQueueOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		ties bool
	}{{"large", 5000, false}, {"ties", 3000, true}, {"small", 100, false}, {"empty", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.n), 1))
			bound := func() float64 {
				v := rng.NormFloat64()
				if tc.ties {
					v = math.Round(v * 4)
				}
				return v
			}
			nodes := make([]node, tc.n)
			for i := range nodes {
				nodes[i] = node{bound(), int32(i)}
			}
			var left []float64 // every bound not popped yet: the reference
			for _, n := range nodes {
				left = append(left, n.ub)
			}
			q := seedQueue(append([]node(nil), nodes...))
			if tc.n >= 1000 && (len(q.rest) == 0 || len(q.h) > tc.n/4) {
				t.Fatalf("%d nodes: heap %d, rest %d", tc.n, len(q.h), len(q.rest))
			}
			for step := 0; ; step++ {
				if step%3 == 0 && step < 3*tc.n { // a block pushed between pops
					p := node{bound(), int32(tc.n + step)}
					left = append(left, p.ub)
					q.h.push(p)
				}
				top, ok := q.top()
				if ok != (len(left) > 0) {
					t.Fatalf("pop %d: queue has a node: %v, reference has %d", step, ok, len(left))
				}
				if !ok {
					break
				}
				best := 0
				for i, v := range left {
					if v > left[best] {
						best = i
					}
				}
				want := left[best]
				left[best] = left[len(left)-1]
				left = left[:len(left)-1]
				q.h.pop()
				if top.ub != want {
					t.Fatalf("pop %d: bound %g, want %g", step, top.ub, want)
				}
			}
		})
	}
}

func TestQueueNaN(t *testing.T) {
	nodes := make([]node, 4000)
	for i := range nodes {
		nodes[i] = node{float64(i), int32(i)}
	}
	nodes[7].ub = math.NaN()
	q := seedQueue(nodes)
	for _, n := range q.rest {
		if math.IsNaN(n.ub) {
			t.Fatal("a NaN bound was set aside")
		}
	}
	if len(q.rest) == 0 {
		t.Fatal("nothing set aside")
	}
}

// TestThetaBoard: a split search's shared threshold only rises, from −∞, and ignores NaN.
func TestThetaBoard(t *testing.T) {
	b := newThetaBoard(2)
	for _, tc := range []struct {
		raise, want float64
	}{{math.Inf(-1), math.Inf(-1)}, {-3, -3}, {-5, -3}, {math.NaN(), -3}, {2.5, 2.5}, {2.5, 2.5}, {1, 2.5}, {math.Inf(1), math.Inf(1)}} {
		b.raise(1, tc.raise)
		if got := b.load(1); got != tc.want {
			t.Fatalf("after raise(%g): %g, want %g", tc.raise, got, tc.want)
		}
		if got := b.load(0); !math.IsInf(got, -1) {
			t.Fatalf("queue 0 moved to %g", got)
		}
	}
}
