package dualmem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SegmentError is a segment file whose bytes for one step do not match the checksum written
// with them: the files were changed or damaged after the step was committed. The database,
// the store of record, still holds the step; RebuildSegments writes the files again from it.
type SegmentError struct {
	Layer string // "" for the token arrays every layer shares
	Step  int
	File  string
}

func (e *SegmentError) Error() string {
	what := "the token arrays"
	if e.Layer != "" {
		what = fmt.Sprintf("layer %q", e.Layer)
	}
	return fmt.Sprintf("segment of %s: step %d: checksum mismatch (%s)", what, e.Step, e.File)
}

// errSegmentsReadOnly: a read-only store cannot rebuild its segment files.
var errSegmentsReadOnly = errors.New("segment files are rebuilt by a read-write open")

// CheckSegments reads every committed step of the segment files once and compares it with
// the checksums written with it (opening them checks only the last step), calling progress
// with steps done and total. A mismatch is a *SegmentError naming the layer and step. A
// store without segment files has nothing to check.
func (s *Store) CheckSegments(ctx context.Context, progress func(done, total int)) error {
	sg := s.segments()
	if sg == nil {
		return nil
	}
	err := sg.checkStepsCtx(ctx, 1, min(s.Steps(), sg.steps()), progress)
	var se *SegmentError
	if errors.As(err, &se) {
		s.faults.Store(se.Layer, se)
	}
	return err
}

// Fault is the damage CheckSegments found in the segment files a layer's answers read (its
// own or the token arrays every layer shares), or nil; RebuildSegments clears it.
func (s *Store) Fault(layer string) error {
	for _, name := range []string{layer, ""} {
		if f, ok := s.faults.Load(name); ok {
			return f.(*SegmentError)
		}
	}
	return nil
}

// HasSegments reports whether the store has valid segment files open.
func (s *Store) HasSegments() bool { return s.segments() != nil }

// RebuildSegments writes the segment files again from the database, as when they are
// missing; memories already handed out keep reading the old files until released.
func (s *Store) RebuildSegments(progress func(layer string, done, total int)) error {
	if s.readOnly {
		return fmt.Errorf("%s: %w", s.dir, errSegmentsReadOnly)
	}
	_, err := s.rebuildSegments(true, progress)
	if err == nil {
		s.faults.Clear()
	}
	return err
}

// checkStepsCtx compares steps from..to (1-based) of every file with their index checksums.
func (sg *segments) checkStepsCtx(ctx context.Context, from, to int, progress func(done, total int)) error {
	sg.mu.Lock()
	starts, recs := sg.starts[:to+1:to+1], sg.recs[:to*sg.width():to*sg.width()]
	sg.mu.Unlock()
	fs := make([]*os.File, len(sg.specs))
	defer func() {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i, sp := range sg.specs {
		f, err := os.Open(filepath.Join(sg.dir, sp.name))
		if err != nil {
			return fmt.Errorf("segment of %s: %w", sp.what(), err)
		}
		fs[i] = f
	}
	data := make([][]byte, len(sg.specs))
	for k := from - 1; k < to; k++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i, sp := range sg.specs {
			n := (starts[k+1] - starts[k]) * int64(sp.elem)
			if int64(cap(data[i])) < n {
				data[i] = make([]byte, n)
			}
			data[i] = data[i][:n]
			if _, err := fs[i].ReadAt(data[i], starts[k]*int64(sp.elem)); err != nil {
				return fmt.Errorf("segment of %s: step %d: %w", sp.what(), k+1, err)
			}
		}
		rec, want := sg.record(int(starts[k+1]-starts[k]), data), recs[k*sg.width():][:sg.width()]
		if rec[1] != want[1] {
			return &SegmentError{Step: k + 1, File: filepath.Join(sg.dir, sg.specs[0].name)}
		}
		for l := range sg.nl {
			if rec[2+l] != want[2+l] {
				sp := sg.specs[nTokenFiles+2*l]
				return &SegmentError{Layer: sp.layer, Step: k + 1, File: filepath.Join(sg.dir, sp.name)}
			}
		}
		if progress != nil {
			progress(k+2-from, to+1-from)
		}
	}
	return nil
}
