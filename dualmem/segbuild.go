package dualmem

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"

	badger "github.com/dgraph-io/badger/v4"
)

// initSegments opens the segment files at Open: valid ones are used (and appended to by a
// writer); a new store starts empty ones; missing or stale ones are rebuilt on first use.
func (s *Store) initSegments() {
	if !nativeLittleEndian() {
		return
	}
	dir := filepath.Join(s.dir, SegmentsDir)
	infos, err := s.StepInfos()
	if err != nil {
		slog.Warn("segment files not checked", "dir", s.dir, "err", err)
		return
	}
	sg, err := openSegments(dir, s.meta, infos, !s.readOnly)
	switch {
	case err == nil:
	case errors.Is(err, errNoSegments) && len(infos) == 0 && !s.readOnly:
		if sg, err = createSegments(dir, s.meta); err != nil {
			slog.Warn("segment files not created; they are built on first use", "dir", s.dir, "err", err)
		}
	case errors.Is(err, errNoSegments):
	case s.readOnly:
		slog.Warn("segment files are stale; a read-write open rebuilds them", "dir", s.dir, "reason", err)
	default:
		slog.Warn("segment files are stale and will be rebuilt from the database", "dir", s.dir, "reason", err)
	}
	if err == nil {
		s.seg = sg
	}
}

// PrepareSegments builds the segment files from the database now if they are missing or
// stale, calling progress per layer and step, so that the first Memory does not. A
// read-only store leaves them as they are.
func (s *Store) PrepareSegments(progress func(layer string, done, total int)) error {
	_, err := s.readSegments(progress)
	return err
}

// segments returns the open segment files, or nil.
func (s *Store) segments() *segments {
	s.segMu.Lock()
	defer s.segMu.Unlock()
	return s.seg
}

// readSegments returns the segment files, rebuilding them from the database first when
// they are missing or stale; nil (and no error) on a read-only store without valid ones.
func (s *Store) readSegments(progress func(layer string, done, total int)) (*segments, error) {
	if sg := s.segments(); sg != nil || s.readOnly || !nativeLittleEndian() {
		if sg != nil && !s.readOnly && sg.staleAggs() {
			return sg, s.refreshAggs(sg, progress)
		}
		return sg, nil
	}
	return s.rebuildSegments(false, progress)
}

// rebuildSegments builds the segment files from the database and puts them in place of the
// open ones (closed after), unless valid ones are open and always is false. The writer must
// not append meanwhile: it holds the writer side and includes every step written so far,
// committed or not.
func (s *Store) rebuildSegments(always bool, progress func(layer string, done, total int)) (*segments, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return nil, err
	}
	if sg := s.segments(); sg != nil && !always {
		return sg, nil
	}
	n := s.lastAppended()
	if err := s.flush(n); err != nil {
		return nil, err
	}
	sg, err := s.buildSegments(n, progress)
	if err != nil {
		return nil, fmt.Errorf("%s: building segment files: %w", s.dir, err)
	}
	s.segMu.Lock()
	old := s.seg
	s.seg = sg
	s.segMu.Unlock()
	if old != nil {
		err = old.close()
	}
	return sg, err
}

// buildSegments writes the segment files of steps 1..n from the database into
// DIR/segments.building, syncs them and moves them to DIR/segments: a build that is killed
// leaves the old files or none, never a mix.
func (s *Store) buildSegments(n int, progress func(layer string, done, total int)) (*segments, error) {
	if err := s.vectorsInDB("building the segment files"); err != nil {
		return nil, err
	}
	infos, err := s.stepInfos(n)
	if err != nil {
		return nil, err
	}
	var need int64
	for _, si := range infos {
		need += segStepBytes(s.meta, si.Tokens())
	}
	if err := room(s.dir, need+diskSlack); err != nil {
		return nil, err
	}
	tmp, final := filepath.Join(s.dir, segBuildingDir), filepath.Join(s.dir, SegmentsDir)
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	sg, err := createSegments(tmp, s.meta)
	if err != nil {
		return nil, err
	}
	defer sg.close()
	w := sg.width()
	recs := make([]uint32, n*w)
	for k, si := range infos {
		recs[k*w] = uint32(si.Tokens())
	}
	bw := make([]*bufio.Writer, len(sg.out))
	for i, f := range sg.out {
		bw[i] = bufio.NewWriterSize(f, 1<<20)
	}
	put := func(i int, b []byte, slot *uint32) error {
		*slot = crc32.Update(*slot, crcTable, b)
		_, err := bw[i].Write(b)
		return err
	}
	err = s.db.View(func(txn *badger.Txn) error {
		if err := scanSteps(txn, []byte{pTokens}, n, func(t int, b []byte) error {
			si := infos[t-1]
			m := newLayerMemory(LayerSpec{}, infos[t-1:t])
			if err := decodeTokens(b, m.Offsets, m.Targets); err != nil {
				return fmt.Errorf("step %d: %w", si.Step, err)
			}
			slot := &recs[(t-1)*w+1]
			return errors.Join(put(0, bytesOf(m.Step), slot), put(1, bytesOf(m.Rows), slot),
				put(2, bytesOf(m.Pos), slot), put(3, bytesOf(m.Targets), slot), put(4, bytesOf(m.Offsets), slot))
		}); err != nil {
			return fmt.Errorf("tokens: %w", err)
		}
		for li, l := range s.meta.Layers {
			var keys, grads []float32
			aw := bufio.NewWriterSize(sg.aggs[li].out, 1<<20)
			if err := scanSteps(txn, layerPrefix(li), n, func(t int, b []byte) error {
				tok := infos[t-1].Tokens()
				keys, grads = grow(keys, tok*l.DIn), grow(grads, tok*l.DOut)
				if err := decodeLayer(b, keys, grads); err != nil {
					return fmt.Errorf("step %d: %w", t, err)
				}
				slot := &recs[(t-1)*w+2+li]
				if err := errors.Join(put(nTokenFiles+2*li, bytesOf(keys), slot), put(nTokenFiles+2*li+1, bytesOf(grads), slot)); err != nil {
					return err
				}
				if _, err := aw.Write(aggRecord(l.DIn, l.DOut, tok, keys, grads)); err != nil {
					return err
				}
				if progress != nil {
					progress(l.Name, t, n)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("layer %q: %w", l.Name, err)
			}
			if err := aw.Flush(); err != nil {
				return fmt.Errorf("layer %q: aggregates: %w", l.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, b := range bw {
		if err := b.Flush(); err != nil {
			return nil, err
		}
	}
	if _, err := sg.index.WriteAt(u32Bytes(recs), segHeader); err != nil {
		return nil, err
	}
	if err := sg.sync(); err != nil {
		return nil, err
	}
	if err := errors.Join(sg.close(), os.RemoveAll(final)); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	if err := syncDir(s.dir); err != nil {
		return nil, err
	}
	return openSegments(final, s.meta, infos, true)
}

func grow(xs []float32, n int) []float32 {
	if cap(xs) < n {
		return make([]float32, n)
	}
	return xs[:n]
}

// segStepBytes is what one step of n tokens adds to the segment files.
func segStepBytes(meta Meta, n int) int64 {
	b := int64(24*n+8+4*len(meta.Layers)) + aggStepBytes(meta)
	for _, l := range meta.Layers {
		b += int64(4 * n * (l.DIn + l.DOut))
	}
	return b + boundsStepBytes(meta, n)
}
