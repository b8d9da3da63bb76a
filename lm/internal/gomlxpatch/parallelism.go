package gomlxpatch

// parallelism: simplego's New prints "SimpleGo backend: parallelism set to N" to stdout when its
// config has parallelism=N, and the option does nothing else but set the worker pool's limit
// (workersPool.SetMaxParallelism, a plain field write, before any work runs). Swapping os.Stdout
// around the call would race with every other writer in the process, so instead the option is
// taken out of the config and the field is written here, at the offset checked with reflect.

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
)

// parallelismOffset is the offset of Backend.workers.maxParallelism, checked once.
var parallelismOffset = sync.OnceValues(func() (uintptr, error) {
	if err := versionErr(); err != nil {
		return 0, err
	}
	bt := reflect.TypeFor[simplego.Backend]()
	w, ok := bt.FieldByName("workers")
	if !ok || w.Type.Kind() != reflect.Struct || w.Type.Name() != "workersPool" || w.Type.PkgPath() != bt.PkgPath() {
		return 0, fmt.Errorf("simplego.Backend has no field `workers workersPool`")
	}
	m, ok := w.Type.FieldByName("maxParallelism")
	if !ok || m.Type != reflect.TypeFor[int]() {
		return 0, fmt.Errorf("simplego.workersPool has no field `maxParallelism int`")
	}
	return w.Offset + m.Offset, nil
})

// parallelismField returns a pointer to b's worker-pool limit.
func parallelismField(b *simplego.Backend) (*int, error) {
	off, err := parallelismOffset()
	if err != nil {
		return nil, err
	}
	return (*int)(unsafe.Add(unsafe.Pointer(b), off)), nil
}

// newBackend creates config's backend. For simplego with parallelism=N it creates the backend
// without that option and sets N itself (quiet reports that it did); if the patch is off it
// passes the option to simplego, which then prints its line.
func newBackend(config string) (backend backends.Backend, quiet bool, err error) {
	// backends.NewWithConfig panics (rather than erring) on an unknown backend name.
	defer func() {
		if r := recover(); r != nil {
			backend, quiet, err = nil, false, fmt.Errorf("gomlxpatch: backend %q: %v", config, r)
		}
	}()
	name, opts, _ := strings.Cut(config, ":")
	rest, n, ok := takeParallelism(opts)
	if name != simplego.BackendName || !ok {
		backend, err = backends.NewWithConfig(config)
		return backend, false, err
	}
	if _, err := parallelismOffset(); err != nil {
		fallBack(patchParallelism, err)
		backend, err = backends.NewWithConfig(config)
		return backend, false, err
	}
	backend, err = backends.NewWithConfig(name + ":" + rest)
	if err != nil {
		return nil, false, err
	}
	field, err := parallelismField(backend.(*simplego.Backend))
	if err != nil {
		return nil, false, err
	}
	*field = n
	return backend, true, nil
}

// takeParallelism removes the parallelism=N options from a simplego option list, returning the
// rest and the last N (simplego applies them in order). ok is false when there is none or one
// is not an integer (simplego then reports the error itself).
func takeParallelism(opts string) (rest string, n int, ok bool) {
	var keep []string
	for opt := range strings.SplitSeq(opts, ",") {
		v, found := strings.CutPrefix(opt, "parallelism=")
		if !found {
			keep = append(keep, opt)
			continue
		}
		i, err := strconv.Atoi(v)
		if err != nil {
			return "", 0, false
		}
		n, ok = i, true
	}
	return strings.Join(keep, ","), n, ok
}
