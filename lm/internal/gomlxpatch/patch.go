// Package gomlxpatch holds every patch Spotlight applies to GoMLX, all written against one
// pinned GoMLX version (PinnedVersion) and installed by one entry point, NewBackend.
//
// The patches:
//
//   - parallelism: simplego's "parallelism=N" option is applied by writing the worker pool's
//     limit directly, because simplego prints "SimpleGo backend: parallelism set to N" to
//     stdout when it parses the option, which would corrupt a command's --json output.
//   - fastdot: simplego's float32 DotGeneral executor replaced by a packed AVX2/FMA GEMM
//     (fastdot*.go). SPOTLIGHT_FASTDOT=0 turns it off, together with fastops.
//   - fastops: faster float32 executors for simplego's element-wise binary ops, BroadcastInDim
//     and reductions, bit-identical to simplego's (fastops*.go). SPOTLIGHT_FASTOPS=0 turns off
//     only these.
//   - dotgeneral-vjp: the gradient of DotGeneral built from two DotGenerals, instead of
//     GoMLX's broadcast multiply plus reduce-sum that simplego runs literally (vjp.go).
//   - slice-vjp: the gradient of a unit-stride Slice built from Concatenate, since GoMLX's
//     uses Pad, which simplego lacks (vjp.go).
//
// All of them reach GoMLX internals (//go:linkname to unexported functions, unexported struct
// fields read with reflect and unsafe), so they share one failure policy: if the GoMLX in the
// build is not PinnedVersion, if a layout check fails, or if a patch's start-up self-test
// against GoMLX's own executor or gradient disagrees, that patch stays off, one slog warning
// names the patch and the reason, and GoMLX's own code runs. Nothing here panics on a mismatch.
// TestPinMatchesGoMod fails when go.mod moves to another GoMLX version: re-check the patches
// against the new version's source before moving the pin.
package gomlxpatch

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
)

// PinnedVersion is the GoMLX version whose internals every patch here was written against.
const PinnedVersion = "v0.26.0"

// gomlxModule is GoMLX's module path.
const gomlxModule = "github.com/gomlx/gomlx"

// The patch names used in warnings and in Active.
const (
	patchParallelism   = "parallelism"
	patchFastDot       = "fastdot"
	patchFastOps       = "fastops"
	patchDotGeneralVJP = "dotgeneral-vjp"
	patchSliceVJP      = "slice-vjp"
)

// Active says which patches are in effect.
type Active struct {
	Parallelism             bool // parallelism=N applied without simplego's stdout line
	FastDot, FastOps        bool // the executors (their state now: tests may switch them)
	DotGeneralVJP, SliceVJP bool // the gradients
}

// String lists the active patches, e.g. "parallelism fastdot fastops dotgeneral-vjp slice-vjp".
func (a Active) String() string {
	var on []string
	for _, p := range []struct {
		name string
		on   bool
	}{{patchParallelism, a.Parallelism}, {patchFastDot, a.FastDot}, {patchFastOps, a.FastOps},
		{patchDotGeneralVJP, a.DotGeneralVJP}, {patchSliceVJP, a.SliceVJP}} {
		if p.on {
			on = append(on, p.name)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, " ")
}

// NewBackend creates the GoMLX backend that config names ("<backend>:<options>", as
// backends.NewWithConfig takes it) and installs every patch that applies to it: the executors
// only on simplego, the gradients (process-wide) on any backend, each once per process and
// after its self-test on this backend. It errs only when GoMLX cannot create the backend.
func NewBackend(config string) (backend backends.Backend, active Active, err error) {
	backend, active.Parallelism, err = newBackend(config)
	if err != nil {
		return nil, Active{}, err
	}
	installExecutors(backend)
	active.DotGeneralVJP, active.SliceVJP = installGradients(backend)
	active.FastDot, active.FastOps = FastDotEnabled(), FastOpsEnabled()
	return backend, active, nil
}

// versionErr reports, once per process, whether the GoMLX in this binary is PinnedVersion.
var versionErr = sync.OnceValue(func() error { return checkVersion(debug.ReadBuildInfo()) })

// checkVersion refuses any GoMLX but the pinned one: linknamed signatures and unexported layouts
// cannot all be checked at run time. Without build information (rare) the layout checks and the
// self-tests still guard.
func checkVersion(bi *debug.BuildInfo, ok bool) error {
	if !ok {
		return nil
	}
	for _, dep := range bi.Deps {
		if dep.Path != gomlxModule {
			continue
		}
		if dep.Replace != nil {
			dep = dep.Replace
		}
		if dep.Version != PinnedVersion {
			return fmt.Errorf("%s is %q (%s), the patches were written against %s",
				gomlxModule, dep.Version, dep.Path, PinnedVersion)
		}
	}
	return nil
}

// warned holds the patches already warned about.
var warned sync.Map

// fallBack logs, once per patch and process, that patch is off and GoMLX's own code runs.
func fallBack(patch string, reason error) {
	if _, dup := warned.LoadOrStore(patch, true); dup {
		return
	}
	slog.Warn("gomlxpatch: patch off, GoMLX's own code runs instead", "patch", patch,
		"reason", reason.Error(), "pinned", PinnedVersion)
}
