package dualmem

import (
	"encoding/binary"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// DefaultKeepEvery is how many steps apart kept checkpoints are by default: a retrain
// replays at most that many steps more than it must, and each kept checkpoint costs the
// size of one (weights and momentum).
const DefaultKeepEvery = 200

// KeptCheckpoint is one checkpoint kept for retraining.
type KeptCheckpoint struct {
	Step  int   `json:"step"`
	Bytes int64 `json:"bytes"`
}

// SetKeepEvery sets the retention of checkpoints for the commits that follow: a commit's
// checkpoint is kept when it is the first commit at or past a multiple of n steps since
// the last kept one (every commit whose step is a multiple of n, when the commits fall on
// them). n ≤ 0 keeps none but step 0's. The last checkpoint is always there too.
func (s *Store) SetKeepEvery(n int) { s.keepEvery.Store(int64(n)) }

// keeps reports whether the commit of step keeps its checkpoint.
func (s *Store) keeps(step int) bool {
	n := int(s.keepEvery.Load())
	last := int(s.lastKept.Load())
	return n > 0 && (last < 0 || step/n > last/n)
}

func keptKey(step int) []byte { return stepKey([]byte{pKept}, step) }

// lastKeptStep is the step of the latest kept checkpoint, -1 if none (a directory
// written before checkpoints were kept).
func lastKeptStep(txn *badger.Txn) (int, error) {
	last := -1
	err := scanBlobs(txn, []byte{pKept}, []byte{pKept}, func(base, _ []byte) error {
		if len(base) != 9 {
			return fmt.Errorf("corrupt key %q", base)
		}
		last = int(binary.BigEndian.Uint64(base[1:]))
		return nil
	})
	return last, err
}

// KeptCheckpoints lists the kept checkpoints in step order, with their stored sizes.
func (s *Store) KeptCheckpoints() ([]KeptCheckpoint, error) {
	out := []KeptCheckpoint{}
	err := s.db.View(func(txn *badger.Txn) error {
		opt := badger.IteratorOptions{Prefix: []byte{pKept}}
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 13 {
				return fmt.Errorf("corrupt key %q", k)
			}
			step := int(binary.BigEndian.Uint64(k[1:]))
			if len(out) == 0 || out[len(out)-1].Step != step {
				out = append(out, KeptCheckpoint{Step: step})
			}
			out[len(out)-1].Bytes += it.Item().ValueSize()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listing kept checkpoints: %w", s.dir, err)
	}
	return out, nil
}

// CheckpointAt returns the checkpoint nearest at or before step: the last committed one
// if step is at or past it, else the latest kept one not after step. ErrNotFound when
// there is none (a directory written before checkpoints were kept has only its last).
func (s *Store) CheckpointAt(step int) (at int, blob []byte, err error) {
	if step < 0 {
		return 0, nil, fmt.Errorf("checkpoint at step %d: %w", step, ErrNotFound)
	}
	if c, b, err := s.Checkpoint(); err != nil || c <= step {
		return c, b, err
	}
	at = -1
	err = s.db.View(func(txn *badger.Txn) error {
		return scanBlobs(txn, []byte{pKept}, []byte{pKept}, func(base, data []byte) error {
			st := int(binary.BigEndian.Uint64(base[1:]))
			if st > step {
				return errStop
			}
			at, blob = st, append(blob[:0], data...)
			return nil
		})
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	if err == nil && at < 0 {
		err = fmt.Errorf("no checkpoint kept at or before step %d: %w", step, ErrNotFound)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", s.dir, err)
	}
	return at, blob, nil
}
