//go:build amd64 && !purego

package gomlxpatch

import "golang.org/x/sys/cpu"

// hasAVX2FMA is whether the assembly micro-kernel can run (x/sys/cpu also checks that the OS
// saves the YMM registers).
var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// useAsm selects the assembly micro-kernel; tests may clear it.
var useAsm = hasAVX2FMA

//go:noescape
func kernel6x16(kc int, a, b, c *float32, ldc int)

func kernel(kc int, a, b, c []float32, ldc int) {
	if useAsm {
		// Bounds were checked by the caller (macro) for c; a and b are full packed panels.
		_ = a[kc*mr-1]
		_ = b[kc*nr-1]
		kernel6x16(kc, &a[0], &b[0], &c[0], ldc)
		return
	}
	kernelGo(kc, a, b, c, ldc)
}

// KernelName says which micro-kernel runs.
func KernelName() string {
	if useAsm {
		return "avx2-fma-6x16"
	}
	return "go-6x16"
}
