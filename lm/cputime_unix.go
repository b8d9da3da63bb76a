//go:build unix

package lm

import (
	"syscall"
	"time"
)

// ProcessUsage is what the process has used so far, all threads.
func ProcessUsage() Usage {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return Usage{}
	}
	sys := time.Duration(ru.Stime.Nano())
	return Usage{CPU: time.Duration(ru.Utime.Nano()) + sys, Sys: sys, MinorFaults: int64(ru.Minflt)}
}
