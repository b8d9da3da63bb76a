package lm

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// backendRandTensor returns a float32 tensor of the given dimensions with values in [-1, 1).
func backendRandTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = 2*rng.Float32() - 1
	}
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

// captureStdout runs f with os.Stdout redirected to a pipe and returns what f printed.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	func() {
		defer func() { os.Stdout = saved }()
		f()
	}()
	w.Close()
	out := <-done
	r.Close()
	return out
}

// NewBackend prints nothing to stdout (simplego prints a line when it parses parallelism=N,
// which would corrupt a command's --json output), for the default config and for a
// $GOMLX_BACKEND with its own parallelism.
func TestNewBackendPrintsNothing(t *testing.T) {
	for _, env := range []string{"", "go:parallelism=2,ops_sequential"} {
		t.Setenv(backends.ConfigEnvVar, env)
		var err error
		out := captureStdout(t, func() {
			var b backends.Backend
			if b, err = NewBackend(); err == nil {
				b.Finalize()
			}
		})
		if err != nil {
			t.Fatalf("GOMLX_BACKEND=%q: %v", env, err)
		}
		if out != "" {
			t.Errorf("GOMLX_BACKEND=%q: NewBackend printed %q to stdout", env, out)
		}
	}
}

// TestNewBackendExecNoDeadlock runs, on NewBackend's backend, a graph with independent
// branches, each a [64,128]x[128,512] matmul plus a batched one, forward and backward (with
// Slice gradients), under a watchdog. On 2 cores the default simplego worker pool ("go",
// parallelism = #CPUs) deadlocked on this graph (0 CPU used; checked with GOMLX_BACKEND=go).
func TestNewBackendExecNoDeadlock(t *testing.T) {
	backend := newBackendForTest(t)
	const branches, tokens, d, h = 3, 64, 128, 512
	rng := rand.New(rand.NewPCG(7, 8))
	xT := backendRandTensor(rng, branches, tokens, d)
	wT := backendRandTensor(rng, d, h)
	exec, err := graph.NewExec(backend, func(x, w *graph.Node) []*graph.Node {
		var loss *graph.Node
		for i := range branches {
			xi := graph.Slice(x, graph.AxisRange(i, i+1)) // [1, tokens, d]
			hid := graph.Tanh(graph.DotGeneral(xi, []int{2}, nil, w, []int{0}, nil))
			s := graph.DotGeneral(hid, []int{2}, []int{0}, hid, []int{2}, []int{0}) // [1, tokens, tokens]
			l := graph.ReduceAllSum(graph.Tanh(s))
			if loss == nil {
				loss = l
			} else {
				loss = graph.Add(loss, l)
			}
		}
		g := graph.Gradient(loss, x, w)
		return []*graph.Node{loss, g[0], g[1]}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	done := make(chan error, 1)
	go func() {
		for range 3 {
			outs, err := exec.Exec(xT, wT)
			if err != nil {
				done <- err
				return
			}
			for _, o := range outs {
				for _, f := range tensors.MustCopyFlatData[float32](o) {
					if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
						done <- errNonFinite
						return
					}
				}
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Exec did not finish in 30s on backend %q: deadlock in the worker pool?", backend.Name())
	}
}

var errNonFinite = errors.New("non-finite value in outputs")

func TestNewBackendHonoursEnv(t *testing.T) {
	t.Setenv(backends.ConfigEnvVar, "go:ops_sequential")
	b, err := NewBackend()
	if err != nil {
		t.Fatal(err)
	}
	b.Finalize()
	t.Setenv(backends.ConfigEnvVar, "no-such-backend")
	if _, err := NewBackend(); err == nil {
		t.Error("NewBackend with an unknown $GOMLX_BACKEND returned no error")
	}
}

func newBackendForTest(t *testing.T) backends.Backend {
	t.Helper()
	b, err := sharedBackend()
	if err != nil {
		t.Fatalf("NewBackend: %v", err)
	}
	if !strings.HasPrefix(b.Name(), "SimpleGo") && os.Getenv(backends.ConfigEnvVar) == "" {
		t.Fatalf("default backend is %q, want simplego", b.Name())
	}
	return b
}
