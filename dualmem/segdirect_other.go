//go:build !linux

package dualmem

import "os"

// openDirect: direct writes are only used on Linux.
func openDirect(string) *os.File { return nil }
