package dualmem

import (
	"errors"
	"fmt"
)

// ErrSegmentsOnly: the data directory's database holds no keys or gradients
// (Meta.SegmentsOnly), so whatever would read them from it is refused rather than answered
// with zeros.
var ErrSegmentsOnly = errors.New("segments-only memory: its keys and gradients are in the segment files alone, not in the database")

// vectorsInDB fails with ErrSegmentsOnly when the database holds no keys or gradients.
func (s *Store) vectorsInDB(what string) error {
	if s.meta.SegmentsOnly {
		return fmt.Errorf("%s: %s: %w", s.dir, what, ErrSegmentsOnly)
	}
	return nil
}
