package dualmem

import (
	"encoding/binary"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/spotlight-lm/spotlight/internal/filemem"
	"github.com/spotlight-lm/spotlight/lm"
)

// LayerMemory is one layer's whole committed training memory in contiguous slabs (on the
// heap from LoadLayer, mapped from the segment files from Store.Memory). Token j
// (over all steps, in step order, then row-major over [Rows, Ctx]) has key
// Keys[j*DIn:(j+1)*DIn], raw gradient Grads[j*DOut:(j+1)*DOut], step Step[j] (1-based),
// batch row Rows[j], position Pos[j], corpus offset Offsets[j] and target Targets[j].
type LayerMemory struct {
	Spec    LayerSpec
	Keys    []float32 // [N, DIn]
	Grads   []float32 // [N, DOut]
	Step    []int32
	Offsets []int64
	Targets []int32
	Rows    []int32
	Pos     []int32
	Steps   []lm.StepInfo // the committed steps, Steps[k].Step == k+1
	Initial lm.Initial

	index  *offsetIndex // shared by the layers of one Memory call; nil: NewScanner builds one
	layout *blockLayout // Search's blocks, shared as index is; nil: built for this layer alone
	agg    *aggView     // per-step aggregates (aggregates.go); nil without valid ones
	aggErr error        // why agg is nil
	bounds *blockBounds // the block bounds sidecar (mapped); nil: Search computes them
	// rKeys and rGrads are Keys and Grads through the segment files' MADV_RANDOM mappings
	// (mmap.go), for reads out of memory order; nil on the heap, where Keys and Grads serve.
	rKeys, rGrads []float32
	// arena holds the per-token indexes built for the layers of one Memory call (the offset
	// index, the block layout, each Scanner's per-step sums) in file-backed pages; nil: the heap.
	arena *filemem.Arena
}

// Release frees the indexes that the layers of one Memory call share, and that scanners of
// them hold, once none of those scanners is in use again: a server calls it when it retires
// the memory's last reader. Releasing any one of the layers releases them for all.
func (m *LayerMemory) Release() error { return m.arena.Close() }

// randomKeys and randomGrads are the keys and gradients for reads out of memory order.
func (m *LayerMemory) randomKeys() []float32 {
	if m.rKeys != nil {
		return m.rKeys
	}
	return m.Keys
}

func (m *LayerMemory) randomGrads() []float32 {
	if m.rGrads != nil {
		return m.rGrads
	}
	return m.Grads
}

// Tokens returns N, the number of training tokens in the memory.
func (m *LayerMemory) Tokens() int { return len(m.Step) }

// LoadLayer reads every committed step of a layer into a LayerMemory, decoding float16 if
// needed, one allocation per slab. progress, if not nil, is called after each step with the
// steps done and the total.
func (s *Store) LoadLayer(name string, progress func(done, total int)) (*LayerMemory, error) {
	li, ok := s.layerIdx[name]
	if !ok {
		return nil, fmt.Errorf("layer %q: %w", name, ErrNotFound)
	}
	if err := s.vectorsInDB("loading layer " + name + " from the database"); err != nil {
		return nil, err
	}
	infos, err := s.StepInfos()
	if err != nil {
		return nil, err
	}
	m := newLayerMemory(s.meta.Layers[li], infos)
	if m.Initial, err = s.Initial(name); err != nil {
		return nil, err
	}
	start := make([]int, len(infos)+1) // first token of each step
	for k, si := range infos {
		start[k+1] = start[k] + si.Tokens()
	}
	c := len(infos)
	err = s.db.View(func(txn *badger.Txn) error {
		tp := []byte{pTokens}
		if err := scanSteps(txn, tp, c, func(t int, b []byte) error {
			a, e := start[t-1], start[t]
			return decodeTokens(b, m.Offsets[a:e], m.Targets[a:e])
		}); err != nil {
			return fmt.Errorf("tokens: %w", err)
		}
		din, dout := m.Spec.DIn, m.Spec.DOut
		return scanSteps(txn, layerPrefix(li), c, func(t int, b []byte) error {
			a, e := start[t-1], start[t]
			if err := decodeLayer(b, m.Keys[a*din:e*din], m.Grads[a*dout:e*dout]); err != nil {
				return err
			}
			if progress != nil {
				progress(t, c)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%s: loading layer %q: %w", s.dir, name, err)
	}
	return m, nil
}

func newLayerMemory(spec LayerSpec, infos []lm.StepInfo) *LayerMemory {
	n := 0
	for _, si := range infos {
		n += si.Tokens()
	}
	m := &LayerMemory{Spec: spec, Steps: infos,
		Keys: make([]float32, n*spec.DIn), Grads: make([]float32, n*spec.DOut),
		Step: make([]int32, n), Offsets: make([]int64, n), Targets: make([]int32, n),
		Rows: make([]int32, n), Pos: make([]int32, n)}
	j := 0
	for _, si := range infos {
		for i := range si.Tokens() {
			m.Step[j], m.Rows[j], m.Pos[j] = int32(si.Step), int32(i/si.Ctx), int32(i%si.Ctx)
			j++
		}
	}
	return m
}

// scanSteps calls fn(t, data) for the blobs of steps 1..c under prefix, checking that each
// step appears exactly once and in order.
func scanSteps(txn *badger.Txn, prefix []byte, c int, fn func(t int, data []byte) error) error {
	next := 1
	err := scanBlobs(txn, prefix, stepKey(prefix, 1), func(base, data []byte) error {
		t := int(binary.BigEndian.Uint64(base[len(prefix):]))
		if t > c {
			return errStop
		}
		if t != next {
			return fmt.Errorf("step %d found where %d was expected", t, next)
		}
		next++
		return fn(t, data)
	})
	if err != nil && err != errStop {
		return err
	}
	if next != c+1 {
		return fmt.Errorf("%d of %d committed steps present", next-1, c)
	}
	return nil
}
