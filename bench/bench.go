// Package bench holds the benchmarks' reference scripts, embedded so that
// `spotlight bench` runs from any checkout or installed binary.
package bench

import _ "embed"

// TorchCharLM is torch_charlm.py: the same model trained in PyTorch, the reference that
// `spotlight bench train` runs in the same run as its own benchmark.
//
//go:embed torch_charlm.py
var TorchCharLM []byte
