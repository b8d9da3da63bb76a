package dualmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/spotlight-lm/spotlight/lm"
)

// Steps returns the last committed step (0 before the first commit).
func (s *Store) Steps() int { return int(s.committed.Load()) }

// Initial returns a layer's weights before step 1.
func (s *Store) Initial(layer string) (lm.Initial, error) {
	i, ok := s.layerIdx[layer]
	if !ok {
		return lm.Initial{}, fmt.Errorf("layer %q: %w", layer, ErrNotFound)
	}
	var b []byte
	err := s.db.View(func(txn *badger.Txn) (err error) {
		b, err = readBlob(txn, initialKey(i))
		return err
	})
	l := s.meta.Layers[i]
	if err == nil && len(b) != 4*(l.DIn*l.DOut+l.DOut) {
		err = fmt.Errorf("%d bytes", len(b))
	}
	if err != nil {
		return lm.Initial{}, fmt.Errorf("reading initial weights of %q: %w", layer, err)
	}
	in := lm.Initial{W: make([]float32, l.DIn*l.DOut), B: make([]float32, l.DOut)}
	getF32s(in.W, b)
	getF32s(in.B, b[4*len(in.W):])
	return in, nil
}

// Checkpoint returns the last committed checkpoint and its step; ErrNoModel if none.
func (s *Store) Checkpoint() (step int, blob []byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		if step, err = readCommitted(txn); err != nil {
			return err
		}
		blob, err = readBlob(txn, []byte{pCheckpoint})
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil, fmt.Errorf("%s: no checkpoint: %w", s.dir, ErrNoModel)
	}
	return step, blob, err
}

// StepInfos returns the records of the committed steps, in order.
func (s *Store) StepInfos() ([]lm.StepInfo, error) { return s.stepInfos(s.Steps()) }

// stepInfos returns the records of steps 1..c (written, committed or not).
func (s *Store) stepInfos(c int) ([]lm.StepInfo, error) {
	out := make([]lm.StepInfo, 0, c)
	err := s.db.View(func(txn *badger.Txn) error {
		opt := badger.IteratorOptions{Prefix: []byte{pHeader}, PrefetchValues: true, PrefetchSize: 100}
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Seek(stepKey(opt.Prefix, 1)); it.ValidForPrefix(opt.Prefix) && len(out) < c; it.Next() {
			var si lm.StepInfo
			err := it.Item().Value(func(v []byte) (err error) { si, err = decodeInfo(v); return err })
			if err != nil {
				return err
			}
			if si.Step != len(out)+1 {
				return fmt.Errorf("step record %d where %d was expected", si.Step, len(out)+1)
			}
			out = append(out, si)
		}
		return nil
	})
	if err == nil && len(out) != c {
		err = fmt.Errorf("%d step records for %d steps", len(out), c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading steps: %w", s.dir, err)
	}
	return out, nil
}

// ReadStep returns committed step t with the named layers (all layers if none are named).
// A step outside 1..Steps() or an unknown layer gives ErrNotFound.
func (s *Store) ReadStep(t int, layers ...string) (*lm.Step, error) {
	if c := s.Steps(); t < 1 || t > c {
		return nil, fmt.Errorf("step %d (committed steps are 1..%d): %w", t, c, ErrNotFound)
	}
	if len(layers) == 0 {
		for _, l := range s.meta.Layers {
			layers = append(layers, l.Name)
		}
	}
	for _, name := range layers {
		if _, ok := s.layerIdx[name]; !ok {
			return nil, fmt.Errorf("layer %q: %w", name, ErrNotFound)
		}
	}
	if err := s.vectorsInDB(fmt.Sprintf("reading step %d", t)); err != nil {
		return nil, err
	}
	st := &lm.Step{Layers: map[string]lm.LayerStep{}}
	err := s.db.View(func(txn *badger.Txn) error {
		v, err := getValue(txn, stepKey([]byte{pHeader}, t))
		if err != nil {
			return err
		}
		if st.StepInfo, err = decodeInfo(v); err != nil {
			return err
		}
		n := st.Tokens()
		st.Offsets, st.Targets = make([]int64, n), make([]int32, n)
		if err := readInto(txn, stepKey([]byte{pTokens}, t), func(b []byte) error {
			return decodeTokens(b, st.Offsets, st.Targets)
		}); err != nil {
			return err
		}
		for _, name := range layers {
			l := s.meta.Layers[s.layerIdx[name]]
			ls := lm.LayerStep{Keys: make([]float32, n*l.DIn), Grads: make([]float32, n*l.DOut)}
			if err := readInto(txn, stepKey(layerPrefix(s.layerIdx[name]), t), func(b []byte) error {
				return decodeLayer(b, ls.Keys, ls.Grads)
			}); err != nil {
				return fmt.Errorf("layer %q: %w", name, err)
			}
			st.Layers[name] = ls
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: reading step %d: %w", s.dir, t, err)
	}
	return st, nil
}

// readInto decodes the blob under base with fn, without copying it.
func readInto(txn *badger.Txn, base []byte, fn func([]byte) error) error {
	found := false
	err := scanBlobs(txn, base, base, func(b, data []byte) error {
		if len(b) != len(base) {
			return nil
		}
		found = true
		if err := fn(data); err != nil {
			return err
		}
		return errStop
	})
	if err == errStop {
		return nil
	}
	if err == nil && !found {
		err = badger.ErrKeyNotFound
	}
	return err
}

// Sizes returns the bytes stored per layer for the committed steps (keys and grads as
// encoded), the SizeCorpus, SizeTokens, SizeInitial, SizeCheckpoint and SizeKept parts, and
// SizeDisk: the space the whole directory takes on disk.
func (s *Store) Sizes() (map[string]int64, error) {
	c := uint64(s.Steps())
	out := map[string]int64{}
	parts := map[byte]string{pCorpus: SizeCorpus, pHeader: SizeTokens, pTokens: SizeTokens,
		pInitial: SizeInitial, pCheckpoint: SizeCheckpoint, pKept: SizeKept}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			name, ok := parts[k[0]]
			if k[0] == pLayer && len(k) >= 11 {
				i := int(binary.BigEndian.Uint16(k[1:]))
				ok = i < len(s.meta.Layers) && binary.BigEndian.Uint64(k[3:]) <= c
				if ok {
					name = s.meta.Layers[i].Name
				}
			}
			if (k[0] == pHeader || k[0] == pTokens) && len(k) >= 9 {
				ok = binary.BigEndian.Uint64(k[1:]) <= c
			}
			if ok {
				out[name] += item.ValueSize()
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, l := range s.meta.Layers {
		out[l.Name] += 0 // present even before any step
	}
	out[SizeDisk], err = DiskUsage(s.dir)
	return out, err
}

// DiskUsage is the space the files under dir take on disk: their allocated blocks, since
// Badger's files are sparse and preallocated.
func DiskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += allocated(fi)
		return nil
	})
	return total, err
}
