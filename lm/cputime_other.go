//go:build !unix

package lm

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
