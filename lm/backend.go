package lm

import (
	"log/slog"
	"os"
	"sync"

	"github.com/gomlx/gomlx/backends"

	"github.com/spotlight-lm/spotlight/lm/internal/gomlxpatch"
)

// defaultBackendConfig is the pure-Go backend with unlimited parallelism. simplego's default
// worker pool caps running tasks at 2×NumCPU (4 on 2-core machines). Ops that run in parallel
// each hold a slot while their DotGeneral blocks in WaitToStart for more slots for its
// sub-tasks, so two concurrent matmuls can take every slot and wait forever (0% CPU;
// TestNewBackendExecNoDeadlock hangs with GOMLX_BACKEND=go). -1 (unlimited goroutines) never
// blocks, and was also ~4× faster than the default on BenchmarkDenseGradient.
const defaultBackendConfig = "go:parallelism=-1"

// sharedBackend is the one backend every model in the process uses: a backend owns a worker
// pool, and models built and dropped per request must not each start one.
var sharedBackend = sync.OnceValues(NewBackend)

// NewBackend returns a GoMLX backend with Spotlight's GoMLX patches installed (package
// gomlxpatch): the one named by $GOMLX_BACKEND when that is set and non-empty (e.g.
// "go:ops_sequential", or "xla" in a binary built with -tags xla), else defaultBackendConfig.
func NewBackend() (backends.Backend, error) {
	config := defaultBackendConfig
	if env := os.Getenv(backends.ConfigEnvVar); env != "" {
		config = env
	}
	backend, active, err := gomlxpatch.NewBackend(config)
	if err != nil {
		return nil, err
	}
	slog.Debug("GoMLX backend", "config", config, "patches", active.String())
	return backend, nil
}
