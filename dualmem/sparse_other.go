//go:build !amd64

package dualmem

// encodeSparseFull leaves every group to the portable loop.
func encodeSparseFull(dst []byte, v []float32) (groups, at int) {
	return 0, 16 * sparseWords(len(v))
}
