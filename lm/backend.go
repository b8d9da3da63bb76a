package lm

import (
	"os"
	"sync"

	"github.com/gomlx/gomlx/backends"

	"github.com/spotlight-lm/spotlight/lm/fastdot"
)

// sharedBackend is the one backend every model in the process uses: a backend owns a worker
// pool, and models built and dropped per request must not each start one.
var sharedBackend = sync.OnceValues(func() (backends.Backend, error) {
	// simplego prints its parallelism setting to stdout, which would corrupt --json output;
	// this runs once, before any of our own output.
	stdout := os.Stdout
	if devnull, err := os.Open(os.DevNull); err == nil {
		os.Stdout = devnull
		defer func() { os.Stdout = stdout; devnull.Close() }()
	}
	return fastdot.Hook(NewBackend())
})
