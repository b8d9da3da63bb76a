package dualmem

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spotlight-lm/spotlight/internal/filemem"
)

// Memory returns every layer's memory of steps 1..steps (at most the committed step), in
// the order of Meta().Layers. The slices are read in place from the segment files (mapped
// read-only: do not modify them), so the heap does not grow with the memory, and later
// calls after more commits extend the same mapping rather than load anything again. The
// layers share their token arrays and offset index. Missing or stale segment files are
// first rebuilt from the database, calling progress per layer; a read-only store without
// valid ones, or one whose rebuild fails, loads the memory onto the heap instead.
func (s *Store) Memory(steps int, progress func(layer string, done, total int)) (out []*LayerMemory, err error) {
	if c := s.Steps(); steps < 0 || steps > c {
		return nil, fmt.Errorf("memory of %d steps (committed steps are 1..%d): %w", steps, c, ErrNotFound)
	}
	sg, err := s.readSegments(progress)
	if err != nil || sg == nil {
		if err == nil {
			err = errors.New("no valid segment files in a read-only directory")
		}
		slog.Warn("reading the memory onto the heap", "dir", s.dir, "reason", err)
		return s.loadMemory(steps, progress)
	}
	infos, err := s.stepInfos(steps)
	if err != nil {
		return nil, err
	}
	if sg.steps() < steps {
		return nil, fmt.Errorf("%s: segment files hold %d steps, want %d", s.dir, sg.steps(), steps)
	}
	sg.mu.Lock()
	n := sg.starts[steps]
	sg.mu.Unlock()
	views := make([][]byte, len(sg.specs))
	for i, sp := range sg.specs {
		if views[i], err = sg.files[i].view(n * int64(sp.elem)); err != nil {
			return nil, fmt.Errorf("%s: segment of %s: %w", s.dir, sp.what(), err)
		}
	}
	shared := LayerMemory{Step: asI32(views[0]), Rows: asI32(views[1]), Pos: asI32(views[2]),
		Targets: asI32(views[3]), Offsets: asI64(views[4]), Steps: infos,
		arena: s.IndexArena()}
	defer func() {
		if err != nil { // nothing holds the indexes yet
			shared.arena.Close()
		}
	}()
	shared.index = newOffsetIndex(shared.Offsets, shared.arena)
	shared.layout = &blockLayout{}
	out = make([]*LayerMemory, len(s.meta.Layers))
	for li, spec := range s.meta.Layers {
		m := shared
		m.Spec, m.Keys, m.Grads = spec, asF32(views[nTokenFiles+2*li]), asF32(views[nTokenFiles+2*li+1])
		for i, r := range []*[]float32{&m.rKeys, &m.rGrads} {
			sp, f := sg.specs[nTokenFiles+2*li+i], sg.files[nTokenFiles+2*li+i]
			b, err := f.randomView(n * int64(sp.elem))
			if err != nil {
				return nil, fmt.Errorf("%s: segment of %s: %w", s.dir, sp.what(), err)
			}
			*r = asF32(b)
		}
		m.agg, m.aggErr = sg.aggView(li, steps)
		if m.Initial, err = s.Initial(spec.Name); err != nil {
			return nil, err
		}
		sg.mu.Lock()
		m.bounds, err = sg.boundsView(li, steps)
		sg.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.dir, err)
		}
		out[li] = &m
	}
	return out, nil
}

// IndexArena is where the per-token indexes of a memory read from this store go: files in
// the store's directory, or in the system's temporary one where that is read-only.
func (s *Store) IndexArena() *filemem.Arena { return filemem.New(s.dir, os.TempDir()) }

// loadMemory is Memory on the heap, from the database.
func (s *Store) loadMemory(steps int, progress func(layer string, done, total int)) ([]*LayerMemory, error) {
	out := make([]*LayerMemory, len(s.meta.Layers))
	for li, spec := range s.meta.Layers {
		m, err := s.LoadLayer(spec.Name, func(done, total int) {
			if progress != nil {
				progress(spec.Name, done, total)
			}
		})
		if err != nil {
			return nil, err
		}
		if out[li], err = m.Prefix(steps); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Prefix is the memory of the first steps only, sharing m's slices.
func (m *LayerMemory) Prefix(steps int) (*LayerMemory, error) {
	if len(m.Steps) < steps {
		return nil, fmt.Errorf("layer %q: memory holds %d steps, want %d", m.Spec.Name, len(m.Steps), steps)
	}
	if len(m.Steps) == steps {
		return m, nil
	}
	n := 0
	for _, si := range m.Steps[:steps] {
		n += si.Tokens()
	}
	c := *m
	din, dout := m.Spec.DIn, m.Spec.DOut
	c.Keys, c.Grads = m.Keys[:n*din], m.Grads[:n*dout]
	if m.rKeys != nil {
		c.rKeys, c.rGrads = m.rKeys[:n*din], m.rGrads[:n*dout]
	}
	c.Step, c.Offsets, c.Targets, c.Rows, c.Pos = m.Step[:n], m.Offsets[:n], m.Targets[:n], m.Rows[:n], m.Pos[:n]
	c.Steps = m.Steps[:steps]
	c.index, c.layout, c.arena = nil, nil, nil
	return &c, nil
}

// offsetIndex finds the tokens trained on a corpus offset: the token indices sorted by
// offset, and for every offset the first of them at or after it (so a lookup is two array
// reads: the evidence of one answer makes hundreds of thousands of them).
type offsetIndex struct {
	sorted []int32
	first  []int32 // [max offset + 2]: first[off] is the first index into sorted with offset ≥ off
}

// newOffsetIndex sorts the tokens by offset with a counting sort (the offsets are corpus
// positions): linear, where a comparison sort took most of a large memory's start-up. It is
// stable, so each offset's tokens stay in memory order; tokens without an offset (negative)
// come first.
// Both arrays come from arena (nil: the heap).
func newOffsetIndex(offsets []int64, arena *filemem.Arena) *offsetIndex {
	top := int64(-1)
	for _, o := range offsets {
		top = max(top, o)
	}
	x := &offsetIndex{sorted: arena.Int32s(len(offsets)), first: arena.Int32s(int(top + 2))}
	neg := int32(0)
	for _, o := range offsets {
		if o < 0 {
			neg++
		} else {
			x.first[o+1]++
		}
	}
	x.first[0] = neg
	for off := 1; off < len(x.first); off++ {
		x.first[off] += x.first[off-1]
	}
	// first[o] serves as offset o's cursor, which leaves it at o's end, o+1's start; the
	// shift below puts the starts back (no second corpus-sized array).
	nneg := int32(0)
	for j, o := range offsets {
		if o < 0 {
			x.sorted[nneg] = int32(j)
			nneg++
		} else {
			x.sorted[x.first[o]] = int32(j)
			x.first[o]++
		}
	}
	for off := top; off >= 1; off-- {
		x.first[off] = x.first[off-1]
	}
	if top >= 0 {
		x.first[0] = neg
	}
	return x
}

// of lists the tokens trained on off, in memory order.
func (x *offsetIndex) of(off int64) []int32 {
	if off < 0 || off+1 >= int64(len(x.first)) {
		return nil
	}
	lo, hi := x.first[off], x.first[off+1]
	return x.sorted[lo:hi:hi]
}
