//go:build xla

// Built only with -tags xla: registers GoMLX's XLA/PJRT backend so that GOMLX_BACKEND=xla
// (or xla:cpu, xla:cuda) selects it in NewBackend. It needs cgo and a PJRT plugin on the
// machine (GoMLX downloads one at run time otherwise), and the module requirement
// github.com/gomlx/go-xla v0.1.4 in go.mod/go.sum, which untagged builds do not need.

package lm

import _ "github.com/gomlx/gomlx/backends/xla" // registers "xla"
