//go:build !amd64

package dualmem

// encodeSparseFull leaves every group to the portable loop.
func encodeSparseFull(dst []byte, v []float32, at int) (groups, end int) {
	return 0, at
}
