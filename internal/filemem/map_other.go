//go:build !linux

package filemem

import (
	"errors"
	"os"
)

// Elsewhere the blocks of a mapped file cannot be reserved portably, so arrays stay on the heap.
var errUnsupported = errors.New("file-backed arrays are implemented on Linux only")

func reserve(*os.File, int64) error { return errUnsupported }

func mapShared(*os.File, int) ([]byte, error) { return nil, errUnsupported }

func unmap([]byte) error { return nil }
