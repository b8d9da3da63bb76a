package dualmem

import (
	"errors"
	"log/slog"
	"os"
)

// errDerivedSkipped marks the aggregate files a training run left out (SkipDerived).
var errDerivedSkipped = errors.New("not written by the training run; built on the first read-write open that reads the memory")

// SkipDerived stops writing the per-step aggregates and block bounds with each step, for a
// training run whose throughput matters more than its first answer: written at every step
// they cost more CPU than the capture itself. Their files are removed; the first read-write
// open that reads the memory builds them again (the aggregates from the database, the
// bounds from the segment files), and until then Search computes bounds in memory.
func (s *Store) SkipDerived() error {
	if err := s.vectorsInDB("leaving out the aggregates, which only the database could give back"); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	sg := s.segments()
	if sg == nil {
		return nil
	}
	sg.mu.Lock()
	defer sg.mu.Unlock()
	var errs []error
	for _, a := range sg.aggs {
		if a.out != nil {
			errs = append(errs, a.out.Close())
			a.out = nil
		}
		a.stale = errDerivedSkipped
		errs = append(errs, removeIfThere(a.path))
	}
	for _, b := range sg.bnd {
		if b.out != nil {
			errs = append(errs, b.out.Close())
			b.out = nil
		}
		b.ok = false
		errs = append(errs, removeIfThere(b.path))
	}
	return errors.Join(errs...)
}

func removeIfThere(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// logDerived reports a derived file that is not used as it is: a missing one (what a
// training run leaves) at debug level, a damaged or stale one as a warning.
func logDerived(err error, msg string, args ...any) {
	if errors.Is(err, os.ErrNotExist) {
		slog.Debug(msg, args...)
		return
	}
	slog.Warn(msg, args...)
}
