//go:build !amd64 || purego

package gomlxpatch

var useAsm = false

func kernel(kc int, a, b, c []float32, ldc int) { kernelGo(kc, a, b, c, ldc) }

// KernelName says which micro-kernel runs.
func KernelName() string { return "go-6x16" }
