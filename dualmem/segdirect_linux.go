package dualmem

import (
	"os"
	"syscall"
)

// openDirect opens path for direct writes, or returns nil (tmpfs, for one, refuses them).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}
