//go:build !unix

package dualmem

import "io/fs"

// allocated is the file's size; Badger's preallocated files may overstate the usage.
func allocated(fi fs.FileInfo) int64 { return fi.Size() }
