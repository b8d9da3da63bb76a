package dualmem

import (
	"encoding/binary"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/spotlight-lm/spotlight/lm"
)

// AppendStep validates st (its Step must be the last appended + 1, starting at Steps()+1
// after Open) and queues it for the background writer, blocking only when four steps are
// already queued. The store keeps st's slices until they are written and then releases st
// (lm.Step.Release): the caller must not use its vectors after the call. A write error is
// sticky: it is returned by this and every later AppendStep, Commit and Close. Appended
// steps stay invisible until committed.
// A step that would leave too little room for the commit and close after it is refused
// with ErrDiskFull (not sticky; see Room).
func (s *Store) AppendStep(st *lm.Step) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateStep(s.meta, st, s.lastAppended()+1); err != nil {
		return err
	}
	size := stepBytes(s.meta, len(st.Offsets))
	if err := room(s.dir, s.pendingBytes()+size+s.reserve()); err != nil {
		return fmt.Errorf("%w (before step %d)", err, st.Step)
	}
	s.mu.Lock()
	s.pending += size
	s.mu.Unlock()
	s.ch <- st
	s.mu.Lock()
	s.appended = st.Step
	s.mu.Unlock()
	return nil
}

// lastAppended is the step of the last AppendStep (or the committed step after Open).
func (s *Store) lastAppended() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appended
}

// writable reports the state that forbids writing: read-only, closed or a sticky error.
func (s *Store) writable() error {
	if s.readOnly {
		return ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.werr
}

func (s *Store) writer() {
	defer close(s.writerEnd)
	for st := range s.ch {
		s.mu.Lock()
		failed := s.werr != nil
		s.mu.Unlock()
		var err error
		if !failed {
			var n int64
			if n, err = s.writeStep(st); err == nil {
				s.logs.written(n)
			}
		}
		st.Release() // written or dropped: its buffers can serve the next steps
		s.mu.Lock()
		if err != nil && s.werr == nil {
			s.werr = fmt.Errorf("writing step %d: %w", st.Step, err)
		}
		if s.werr == nil {
			s.written = st.Step
		}
		s.pending -= stepBytes(s.meta, len(st.Offsets))
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// writeStep stores one step in the database and appends it to the segment files, both at
// once: the database's writes mostly copy and wait for the page cache, the segments' mostly
// wait for the disk. Their order does not matter, since only a commit record, written after
// both are synced, makes the step count. It returns the bytes given to the database.
func (s *Store) writeStep(st *lm.Step) (int64, error) {
	sg := s.segments()
	if sg == nil {
		if err := s.vectorsInDB("appending a step without segment files"); err != nil {
			return 0, err
		}
		return s.writeRecords(st)
	}
	done := make(chan error, 1)
	go func() { done <- sg.append(s.meta, st) }()
	n, err := s.writeRecords(st)
	return n, errors.Join(err, <-done)
}

// writeRecords stores one step's records and returns their bytes; a batch, not a
// transaction, because atomicity comes from the committed step number, and a step can
// outgrow one transaction.
func (s *Store) writeRecords(st *lm.Step) (int64, error) {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	es := []*badger.Entry{badger.NewEntry(stepKey([]byte{pHeader}, st.Step), encodeInfo(st.StepInfo))}
	es = append(es, blobEntries(stepKey([]byte{pTokens}, st.Step), encodeTokens(st.Offsets, st.Targets))...)
	if s.wbufs == nil {
		s.wbufs = make([][]byte, len(s.meta.Layers))
	}
	for i, l := range s.meta.Layers {
		if s.meta.SegmentsOnly {
			break
		}
		// Badger has copied the values when Flush returns, so st's vectors and the buffers
		// serve every step.
		var les []*badger.Entry
		les, s.wbufs[i] = layerEntries(stepKey(layerPrefix(i), st.Step), s.meta.Precision, st.Layers[l.Name], s.wbufs[i], s.meta.Format >= sparseFormat)
		es = append(es, les...)
	}
	var n int64
	for _, e := range es {
		if err := wb.SetEntry(e); err != nil {
			return 0, err
		}
		n += int64(len(e.Key) + len(e.Value))
	}
	return n, wb.Flush()
}

// flush waits until every appended step up to step is written.
func (s *Store) flush(step int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.written < step && s.werr == nil {
		s.cond.Wait()
	}
	return s.werr
}

// Commit makes steps up to step visible to readers and records checkpoint (the model and
// optimizer state after that step) with it, atomically: first it waits until those steps
// are written and synced, then one transaction stores the blob and the step number.
// step must lie between Steps() and the last appended step; Commit(0, blob) stores a
// checkpoint of the initial model. Steps appended beyond step stay pending.
func (s *Store) Commit(step int, checkpoint []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	appended := s.lastAppended()
	if c := s.Steps(); step < c || step > appended {
		return fmt.Errorf("commit of step %d: want a step from %d (committed) to %d (appended)", step, c, appended)
	}
	keep := s.keeps(step)
	need := s.pendingBytes() + int64(len(checkpoint)) + s.reserve() - s.ckptBytes.Load()
	if keep {
		need += int64(len(checkpoint))
	}
	if err := room(s.dir, need); err != nil {
		return fmt.Errorf("commit of step %d: %w", step, err)
	}
	if err := s.flush(step); err != nil {
		return err
	}
	// The segments are derived from the database, but a commit record must never name a
	// step they may have lost: sync them first.
	if sg := s.segments(); sg != nil {
		if err := sg.sync(); err != nil {
			return fmt.Errorf("commit of step %d: segment files: %w", step, err)
		}
	}
	if err := s.logs.sync(); err != nil {
		return fmt.Errorf("commit of step %d: syncing the database's logs: %w", step, err)
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	buf := newBlob(len(checkpoint))
	copy(buf[blobHeader:], checkpoint)
	err := s.db.Update(func(txn *badger.Txn) error {
		es := blobEntries([]byte{pCheckpoint}, buf)
		if keep {
			es = append(es, blobEntries(keptKey(step), buf)...)
		}
		for _, e := range es {
			if err := txn.SetEntry(e); err != nil {
				return err
			}
		}
		return txn.Set(keyCommitted, binary.BigEndian.AppendUint64(nil, uint64(step)))
	})
	if err == nil {
		err = s.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("commit of step %d: %w", step, err)
	}
	s.committed.Store(int64(step))
	s.ckptBytes.Store(int64(len(checkpoint)))
	if keep {
		s.lastKept.Store(int64(step))
	}
	return nil
}

// DiscardUncommitted deletes every step record above the committed step, such as those a
// killed run left behind, and makes AppendStep continue at Steps()+1. Readers never see
// those records, so it is safe to interrupt and to repeat.
func (s *Store) DiscardUncommitted() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	appended := s.lastAppended()
	if err := s.flush(appended); err != nil {
		return err
	}
	c := s.Steps()
	keys, err := s.keysAbove(c)
	if err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("discarding steps above %d: %w", c, err)
	}
	if sg := s.segments(); sg != nil {
		if err := sg.truncate(c); err != nil {
			return fmt.Errorf("discarding steps above %d: %w", c, err)
		}
	}
	s.mu.Lock()
	s.appended, s.written = c, c
	s.mu.Unlock()
	return nil
}

// keysAbove lists the keys of all step records after step c.
func (s *Store) keysAbove(c int) ([][]byte, error) {
	prefixes := [][]byte{{pHeader}, {pTokens}}
	for i := range s.meta.Layers {
		prefixes = append(prefixes, layerPrefix(i))
	}
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		for _, p := range prefixes {
			opt := badger.IteratorOptions{Prefix: p}
			it := txn.NewIterator(opt)
			for it.Seek(stepKey(p, c+1)); it.ValidForPrefix(p); it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(errors.New("listing uncommitted steps"), err)
	}
	return keys, nil
}

// Flush waits until every appended step is written, not synced: a benchmark's way to time
// the writes with the steps that made them.
func (s *Store) Flush() error { return s.flush(s.lastAppended()) }
