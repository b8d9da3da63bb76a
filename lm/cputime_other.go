//go:build !unix

package lm

// ProcessUsage is not measured here.
func ProcessUsage() Usage { return Usage{} }
