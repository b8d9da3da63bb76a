// Package bench holds the benchmarks' reference scripts, embedded so that
// `spotlight bench` runs from any checkout or installed binary.
package bench

import _ "embed"

// TorchCharLM is torch_charlm.py: the same model trained in PyTorch, the reference that
// `spotlight bench train` runs in the same run as its own benchmark.
//
//go:embed torch_charlm.py
var TorchCharLM []byte

// ScanMemmap is scan_memmap.py: the full scan of one layer in numpy over the memory's own
// segment files, the reference that `spotlight bench memory` runs beside its requests.
//
//go:embed scan_memmap.py
var ScanMemmap []byte
