//go:build !linux

package dualmem

import (
	"errors"
	"os"
)

// startWriteback: the kernel's own writeback has to do.
func startWriteback(*os.File) {}

// allocate: not offered here; the writer stops asking.
func allocate(*os.File, int64, int64) error { return errors.ErrUnsupported }

// release: not offered here; the kernel's own writeback and reclaim have to do.
func release(*os.File, int64, int64) error { return errors.ErrUnsupported }
