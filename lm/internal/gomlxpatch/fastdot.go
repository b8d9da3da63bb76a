// fastdot: the float32 DotGeneral executor of simplego replaced by a packed GEMM (AVX2+FMA
// micro-kernel on amd64, pure Go elsewhere).
//
// simplego v0.26.0 has no exported hook for op kernels: setNodeExecutor, execDotGeneral and
// (*Backend).getBufferForShape are reached with //go:linkname, and the unexported fields of
// simplego.Node, simplego.Buffer and the DotGeneral node parameters are read at offsets checked
// with reflect. The executor is registered at simplego's priorityUser level, then checked against
// the original executor on random DotGenerals; anything unexpected (layout, a mismatch) leaves
// the original kernel in charge.

package gomlxpatch

import (
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// FastDotEnvVar set to "0" disables the fast DotGeneral and the fast element-wise ops.
const FastDotEnvVar = "SPOTLIGHT_FASTDOT"

// simplego's priorityUser.
const priorityUser = 100

type nodeExecutor func(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error)

//go:linkname setNodeExecutor github.com/gomlx/gomlx/backends/simplego.setNodeExecutor
func setNodeExecutor(opType backends.OpType, priority int, executor nodeExecutor)

//go:linkname origExecDotGeneral github.com/gomlx/gomlx/backends/simplego.execDotGeneral
func origExecDotGeneral(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error)

//go:linkname getBufferForShape github.com/gomlx/gomlx/backends/simplego.(*Backend).getBufferForShape
func getBufferForShape(backend *simplego.Backend, shape shapes.Shape) *simplego.Buffer

// Mirrors of the unexported layouts, checked field by field against reflect in checkLayout.
type bufferMirror struct {
	shape shapes.Shape
	valid bool
	flat  any
}

type dgParamsMirror struct {
	lhsContractingAxes, lhsBatchAxes                       []int
	rhsContractingAxes, rhsBatchAxes                       []int
	batchSize, lhsCrossSize, rhsCrossSize, contractingSize int
}

var (
	layoutOnce sync.Once
	layoutErr  error
	nodeShapeOff,
	nodeDataOff uintptr
	// dgParamsType is the reflect type of *simplego.dotGeneralNodeData, learned from the first
	// DotGeneral node seen (the type is unexported); dgParamsBad is set if it did not match.
	dgParamsType atomic.Pointer[reflect.Type]
	dgParamsBad  atomic.Bool

	installed atomic.Bool // our executor is registered
	enabled   atomic.Bool // our executor computes (else it delegates to the original)
	installMu sync.Mutex
	fastCalls atomic.Int64

	// corruptForTest makes the fast kernel wrong, to test that the self-test catches it.
	corruptForTest bool
)

// sameFields checks that struct type t has exactly the fields of the mirror m (names, types,
// offsets), for the first len(m fields) fields of t.
func sameFields(t, m reflect.Type, exact bool) error {
	if t.Kind() != reflect.Struct {
		return fmt.Errorf("%s is not a struct", t)
	}
	if t.NumField() < m.NumField() || (exact && t.NumField() != m.NumField()) {
		return fmt.Errorf("%s has %d fields, expected %d", t, t.NumField(), m.NumField())
	}
	for i := range m.NumField() {
		tf, mf := t.Field(i), m.Field(i)
		if tf.Name != mf.Name || tf.Type != mf.Type || tf.Offset != mf.Offset {
			return fmt.Errorf("%s field #%d is %s %s @%d, expected %s %s @%d", t, i,
				tf.Name, tf.Type, tf.Offset, mf.Name, mf.Type, mf.Offset)
		}
	}
	return nil
}

func checkLayout() error {
	layoutOnce.Do(func() {
		if err := sameFields(reflect.TypeFor[simplego.Buffer](), reflect.TypeFor[bufferMirror](), true); err != nil {
			layoutErr = err
			return
		}
		nt := reflect.TypeFor[simplego.Node]()
		fs, ok1 := nt.FieldByName("shape")
		fd, ok2 := nt.FieldByName("data")
		if !ok1 || !ok2 || fs.Type != reflect.TypeFor[shapes.Shape]() || fd.Type != reflect.TypeFor[any]() {
			layoutErr = fmt.Errorf("simplego.Node has no fields `shape shapes.Shape` and `data any`")
			return
		}
		nodeShapeOff, nodeDataOff = fs.Offset, fd.Offset
	})
	return layoutErr
}

func bufOf(b *simplego.Buffer) *bufferMirror { return (*bufferMirror)(unsafe.Pointer(b)) }

func nodeShape(n *simplego.Node) shapes.Shape {
	return *(*shapes.Shape)(unsafe.Add(unsafe.Pointer(n), nodeShapeOff))
}

// nodeParams returns the node's DotGeneral parameters, or nil if their type is not the one
// checked against dgParamsMirror.
func nodeParams(n *simplego.Node) *dgParamsMirror {
	data := *(*any)(unsafe.Add(unsafe.Pointer(n), nodeDataOff))
	if data == nil || dgParamsBad.Load() {
		return nil
	}
	t := reflect.TypeOf(data)
	if known := dgParamsType.Load(); known != nil {
		if *known != t {
			return nil
		}
	} else {
		if t.Kind() != reflect.Pointer || t.Elem().Name() != "dotGeneralNodeData" ||
			t.Elem().PkgPath() != "github.com/gomlx/gomlx/backends/simplego" {
			dgParamsBad.Store(true)
			fallBack(patchFastDot, fmt.Errorf("DotGeneral node data has type %s, want *dotGeneralNodeData", t))
			return nil
		}
		if err := sameFields(t.Elem(), reflect.TypeFor[dgParamsMirror](), false); err != nil {
			dgParamsBad.Store(true)
			fallBack(patchFastDot, err)
			return nil
		}
		dgParamsType.Store(&t)
	}
	return (*dgParamsMirror)((*[2]unsafe.Pointer)(unsafe.Pointer(&data))[1])
}

// execDotGeneral is the executor registered at priorityUser.
func execDotGeneral(backend *simplego.Backend, node *simplego.Node, inputs []*simplego.Buffer, inputsOwned []bool) (*simplego.Buffer, error) {
	if !enabled.Load() || len(inputs) != 2 {
		return origExecDotGeneral(backend, node, inputs, inputsOwned)
	}
	lhs, rhs := bufOf(inputs[0]), bufOf(inputs[1])
	if lhs.shape.DType != dtypes.Float32 || rhs.shape.DType != dtypes.Float32 {
		return origExecDotGeneral(backend, node, inputs, inputsOwned)
	}
	p := nodeParams(node)
	if p == nil {
		return origExecDotGeneral(backend, node, inputs, inputsOwned)
	}
	outShape := nodeShape(node)
	lf, ok1 := lhs.flat.([]float32)
	rf, ok2 := rhs.flat.([]float32)
	if !ok1 || !ok2 || outShape.DType != dtypes.Float32 || outShape.Rank() != 3 ||
		outShape.Dimensions[0] != p.batchSize || outShape.Dimensions[1] != p.lhsCrossSize ||
		outShape.Dimensions[2] != p.rhsCrossSize {
		return origExecDotGeneral(backend, node, inputs, inputsOwned)
	}
	prob, ok := newProblem(lhs.shape.Dimensions, rhs.shape.Dimensions, p)
	if !ok || len(lf) < lhs.shape.Size() || len(rf) < rhs.shape.Size() {
		return origExecDotGeneral(backend, node, inputs, inputsOwned)
	}
	out := getBufferForShape(backend, outShape)
	if out == nil {
		return origExecDotGeneral(backend, node, inputs, inputsOwned)
	}
	of, ok := bufOf(out).flat.([]float32)
	if !ok || len(of) < outShape.Size() {
		return nil, fmt.Errorf("fastdot: output buffer is not []float32 of size %d", outShape.Size())
	}
	prob.run(lf, rf, of[:outShape.Size()])
	if corruptForTest {
		of[0] += 1
	}
	fastCalls.Add(1)
	return out, nil
}

// newProblem turns the node parameters into offset tables of the normalised problem
// out[b, i, j] = Σ_k lhs[b, i, k]·rhs[b, j, k], enumerating batch and contracting axes in the
// listed order and cross axes in ascending order, as simplego's DotGeneral does.
func newProblem(lDims, rDims []int, p *dgParamsMirror) (*problem, bool) {
	if len(p.lhsContractingAxes) != len(p.rhsContractingAxes) || len(p.lhsBatchAxes) != len(p.rhsBatchAxes) {
		return nil, false
	}
	lb, lc, lk, ok1 := operandTables(lDims, p.lhsBatchAxes, p.lhsContractingAxes)
	rb, rc, rk, ok2 := operandTables(rDims, p.rhsBatchAxes, p.rhsContractingAxes)
	if !ok1 || !ok2 || len(lb) != p.batchSize || len(rb) != p.batchSize || len(lc) != p.lhsCrossSize ||
		len(rc) != p.rhsCrossSize || len(lk) != p.contractingSize || len(rk) != p.contractingSize {
		return nil, false
	}
	return &problem{batch: p.batchSize, m: len(lc), n: len(rc), k: len(lk),
		aBatch: lb, bBatch: rb, a: newAxis2(lc, lk), b: newAxis2(rc, rk)}, true
}

// operandTables returns the flat offsets of each batch, cross and contracting index.
func operandTables(dims, batchAxes, contractingAxes []int) (batch, cross, contracting []int, ok bool) {
	rank := len(dims)
	strides := make([]int, rank)
	s := 1
	for ax := rank - 1; ax >= 0; ax-- {
		strides[ax] = s
		s *= dims[ax]
	}
	kind := make([]int, rank)
	for _, ax := range contractingAxes {
		if ax < 0 || ax >= rank || kind[ax] != 0 {
			return nil, nil, nil, false
		}
		kind[ax] = 1
	}
	for _, ax := range batchAxes {
		if ax < 0 || ax >= rank || kind[ax] != 0 {
			return nil, nil, nil, false
		}
		kind[ax] = 2
	}
	var crossAxes []int
	for ax := range rank {
		if kind[ax] == 0 {
			crossAxes = append(crossAxes, ax)
		}
	}
	return offsets(dims, strides, batchAxes), offsets(dims, strides, crossAxes), offsets(dims, strides, contractingAxes), true
}

// offsets enumerates, row-major over axes (in the given order), the flat offset of each index.
func offsets(dims, strides, axes []int) []int {
	n := 1
	for _, ax := range axes {
		n *= dims[ax]
	}
	out := make([]int, n)
	if n == 0 {
		return out
	}
	size := 1
	out[0] = 0
	for i := len(axes) - 1; i >= 0; i-- {
		ax := axes[i]
		d, st := dims[ax], strides[ax]
		// Existing entries [0,size) are the offsets of the inner axes; replicate for this axis.
		for v := d - 1; v >= 0; v-- {
			for j := size - 1; j >= 0; j-- {
				out[v*size+j] = out[j] + v*st
			}
		}
		size *= d
	}
	return out
}

// FastDotEnabled reports whether the fast DotGeneral is installed and active.
func FastDotEnabled() bool { return installed.Load() && enabled.Load() }

// SetFastDot switches the fast DotGeneral on or off (for A/B tests); it only has an effect
// after a successful install. It returns the previous state.
func SetFastDot(on bool) bool { return enabled.Swap(on && installed.Load()) }

// FastDotCalls is the number of DotGenerals the fast kernel computed.
func FastDotCalls() int64 { return fastCalls.Load() }

// installExecutors registers the fast DotGeneral (once per process: simplego's executor table
// is global) unless SPOTLIGHT_FASTDOT=0, self-tests it on backend against simplego's own kernel,
// then does the same for the element-wise ops. Backends other than simplego are left alone.
func installExecutors(backend backends.Backend) {
	if os.Getenv(FastDotEnvVar) == "0" {
		return
	}
	if _, ok := backend.(*simplego.Backend); !ok {
		return
	}
	installMu.Lock()
	defer installMu.Unlock()
	if installed.Load() {
		return
	}
	if err := installFastDot(backend); err != nil {
		fallBack(patchFastDot, err)
		return
	}
	installOps(backend)
}

// installFastDot registers and self-tests the fast DotGeneral; on an error it stays disabled.
func installFastDot(backend backends.Backend) error {
	if err := versionErr(); err != nil {
		return err
	}
	if err := checkLayout(); err != nil {
		return err
	}
	enabled.Store(false)
	setNodeExecutor(backends.OpTypeDotGeneral, priorityUser, execDotGeneral)
	installed.Store(true)
	if err := selfTest(backend); err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	enabled.Store(true)
	return nil
}

// installOps registers the element-wise/reduction executors (fastops.go) unless
// SPOTLIGHT_FASTOPS=0 and self-tests them; on failure they stay disabled (the DotGeneral kernel
// is unaffected).
func installOps(backend backends.Backend) {
	if os.Getenv(FastOpsEnvVar) == "0" || opsInstalled.Load() {
		return
	}
	registerOps()
	if err := opsSelfTest(backend); err != nil {
		opsEnabled.Store(false)
		fallBack(patchFastOps, fmt.Errorf("self-test: %w", err))
		return
	}
	opsEnabled.Store(true)
}
