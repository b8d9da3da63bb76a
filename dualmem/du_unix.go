//go:build unix

package dualmem

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// allocated is the space a file takes on disk: Badger's files are sparse and preallocated.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}

// FreeBytes is the space on path's filesystem that an unprivileged process may use.
func FreeBytes(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// writableDir fails when path cannot be written: a read-only mount, or permissions.
func writableDir(path string) error { return unix.Access(path, unix.W_OK) }
