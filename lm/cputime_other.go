//go:build !unix

package lm

import "time"

// ProcessCPU is not measured here.
func ProcessCPU() time.Duration { return 0 }

// ProcessUsage is not measured here.
func ProcessUsage() Usage { return Usage{} }
