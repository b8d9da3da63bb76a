package dualmem

import (
	"math"
	"slices"
)

// node is a step (−1−t) or a block (≥ 0) with its upper bound for one query and ranking.
type node struct {
	ub float64
	id int32
}

// nodeHeap is a max-heap of nodes by ub, typed rather than through container/heap: the
// queues hold every step and pop many of them. It is 4-ary: half a binary heap's depth, and
// a node's children in one or two cache lines, for the pops' cache misses.
type nodeHeap []node

const heapArity = 4

// queue is one query and ranking's best-first queue: a heap of its best seeded steps and
// the blocks pushed since, and the other seeded steps unordered in rest, with their best
// bound, until the heap's best falls below it (most searches end before: a heap of every
// step is ten times larger, and each pop walks it down through cache misses).
type queue struct {
	h       nodeHeap
	rest    []node
	restMax float64
}

// top is the queue's best node, if any.
func (q *queue) top() (node, bool) {
	if len(q.rest) > 0 && (len(q.h) == 0 || q.h[0].ub < q.restMax) {
		q.h = append(q.h, q.rest...)
		q.rest = nil
		q.h.init()
	}
	if len(q.h) == 0 {
		return node{}, false
	}
	return q.h[0], true
}

// seedQueue is a queue of nodes: about the best eighth in its heap (by a sample's cut), the
// rest aside, both in nodes' array. A NaN bound goes to the heap, as it would without the cut.
func seedQueue(nodes []node) queue {
	const sampleEvery, heapShare = 16, 8
	q := queue{h: nodes, restMax: math.Inf(-1)}
	if len(nodes) < 2*heapShare*sampleEvery { // small: all in the heap
		q.h.init()
		return q
	}
	sample := make([]float64, 0, len(nodes)/sampleEvery+1)
	for i := 0; i < len(nodes); i += sampleEvery {
		sample = append(sample, nodes[i].ub)
	}
	slices.Sort(sample) // NaNs first
	cut := sample[len(sample)-len(sample)/heapShare]
	m := 0 // nodes[:m] are those at or above the cut (or NaN)
	for i, n := range nodes {
		if n.ub < cut {
			q.restMax = max(q.restMax, n.ub)
			continue
		}
		nodes[i], nodes[m] = nodes[m], n
		m++
	}
	// The heap's own capacity ends at m, so that its pushes never write over the rest.
	q.h, q.rest = nodes[:m:m], nodes[m:]
	q.h.init()
	return q
}

func (h nodeHeap) Len() int { return len(h) }

func (h nodeHeap) init() {
	for i := (len(h) - 2) / heapArity; i >= 0; i-- {
		h.down(i)
	}
}

func (h *nodeHeap) push(n node) {
	*h = append(*h, n)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / heapArity
		if a[p].ub >= a[i].ub {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *nodeHeap) pop() node {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	*h = a[:last]
	(*h).down(0)
	return top
}

func (h nodeHeap) down(i int) {
	for {
		c := heapArity*i + 1
		if c >= len(h) {
			return
		}
		m := c // the best child
		for j := c + 1; j < min(c+heapArity, len(h)); j++ {
			if h[j].ub > h[m].ub {
				m = j
			}
		}
		if h[i].ub >= h[m].ub {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
