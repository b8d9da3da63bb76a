package lm

// GoMLX glue: backend selection and two gradient (VJP) replacements for gaps in
// github.com/gomlx/gomlx v0.26.0 when it runs on the pure-Go "simplego" backend.
//
// Both replacements read unexported fields of graph nodes with package reflect. They are
// written against the node layout of GoMLX v0.26.0 exactly and verify that layout on every
// use: if a GoMLX upgrade changes it, building a gradient panics with a message naming the
// field, instead of silently computing a wrong gradient. Re-run lm's tests after any GoMLX
// version change.

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // registers the pure-Go backend as "go"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// gomlxPinnedVersion is the GoMLX version whose unexported node layout this file reads.
const gomlxPinnedVersion = "v0.26.0"

// gomlxGraphPkgPath is the import path of the package that owns the unexported node types.
const gomlxGraphPkgPath = "github.com/gomlx/gomlx/pkg/core/graph"

var (
	gradFixesOnce sync.Once

	// origDotGeneralVJP and origSliceVJP are GoMLX's own VJPs, saved by InstallGradientFixes
	// (kept for the strided-Slice fallback, for tests and for benchmarks).
	origDotGeneralVJP graph.VJP
	origSliceVJP      graph.VJP
)

// InstallGradientFixes replaces two gradients in graph.VJPRegistration (idempotent):
//
//   - DotGeneral: GoMLX v0.26.0 builds it as a broadcast multiply plus a reduce-sum, which
//     materialises e.g. a [tokens, in, out] tensor for a dense layer; simplego executes that
//     literally. The replacement is the textbook gradient: two DotGenerals plus transposes.
//   - Slice: GoMLX's gradient uses Pad, which simplego lacks, so backprop through any Slice
//     fails there. The replacement concatenates the adjoint with zeros (unit strides only;
//     strided slices fall back to GoMLX's Pad-based gradient, which works on backends with Pad).
//
// VJPRegistration is a plain map read while gradients are built: call this before building
// any graph (NewBackend does), not concurrently with graph.Gradient.
func InstallGradientFixes() {
	gradFixesOnce.Do(func() {
		checkGoMLXNodeLayout()
		origDotGeneralVJP = graph.VJPRegistration[graph.NodeTypeDotGeneral]
		origSliceVJP = graph.VJPRegistration[graph.NodeTypeSlice]
		if origDotGeneralVJP == nil || origSliceVJP == nil {
			panic(fmt.Errorf("lm.InstallGradientFixes: graph.VJPRegistration has no DotGeneral or Slice entry; "+
				"written for GoMLX %s, re-check lm/gomlx.go", gomlxPinnedVersion))
		}
		graph.VJPRegistration[graph.NodeTypeDotGeneral] = dotGeneralFastVJP
		graph.VJPRegistration[graph.NodeTypeSlice] = sliceConcatVJP
	})
}

// NewBackend installs the gradient fixes and returns a GoMLX backend: the one named by
// $GOMLX_BACKEND when that is set and non-empty (e.g. "go:ops_sequential", or "xla" in a
// binary built with -tags xla), else the pure-Go backend with "go:parallelism=-1".
//
// Why parallelism=-1: simplego's default worker pool caps running tasks at 2×NumCPU (4 on
// these 2-core machines). Ops that run in parallel each hold a slot while their DotGeneral
// blocks in WaitToStart for more slots for its sub-tasks, so two concurrent matmuls can take
// every slot and wait forever (0% CPU; TestNewBackendExecNoDeadlock hangs with
// GOMLX_BACKEND=go). -1 (unlimited goroutines) never blocks, and was also ~4× faster than the
// default on BenchmarkDenseGradient. simplego prints one line to stdout when it parses the
// option ("SimpleGo backend: parallelism set to -1").
func NewBackend() (backend backends.Backend, err error) {
	InstallGradientFixes()
	// backends.NewWithConfig panics (rather than erring) on an unknown backend name.
	defer func() {
		if r := recover(); r != nil {
			backend, err = nil, fmt.Errorf("lm.NewBackend: %v", r)
		}
	}()
	if os.Getenv(backends.ConfigEnvVar) != "" {
		return backends.New()
	}
	return backends.NewWithConfig("go:parallelism=-1")
}

// ---------------------------------------------------------------------------------------------
// Reading the unexported node parameters.

// layoutErr builds the error panicked with when GoMLX's internals are not as expected.
func layoutErr(format string, args ...any) error {
	return fmt.Errorf("lm (lm/gomlx.go): GoMLX internal layout differs from %s, the version the gradient fixes "+
		"were written for: %s", gomlxPinnedVersion, fmt.Sprintf(format, args...))
}

// checkGoMLXNodeLayout verifies, without a graph, that graph.Node still has the unexported
// "inputs" interface field the VJPs read. The concrete parameter structs are checked on use.
func checkGoMLXNodeLayout() {
	nodeT := reflect.TypeFor[graph.Node]()
	f, ok := nodeT.FieldByName("inputs")
	if !ok || f.Type.Kind() != reflect.Interface || f.Type.Name() != "NodeInputs" {
		panic(layoutErr("graph.Node has no field `inputs NodeInputs`"))
	}
}

// nodeParams returns the struct (not the pointer) held in node.inputs, checking that it is
// *graph.<structName> with exactly the fields listed, in that order.
func nodeParams(node *graph.Node, structName string, fields ...string) reflect.Value {
	inputs := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !inputs.IsValid() || inputs.Kind() != reflect.Interface {
		panic(layoutErr("graph.Node has no interface field `inputs`"))
	}
	if inputs.IsNil() {
		panic(layoutErr("node %s has nil inputs", node))
	}
	ptr := inputs.Elem()
	if ptr.Kind() != reflect.Pointer || ptr.Type().Elem().Kind() != reflect.Struct {
		panic(layoutErr("node %s: inputs holds %s, want *%s", node, ptr.Type(), structName))
	}
	st := ptr.Type().Elem()
	if st.Name() != structName || st.PkgPath() != gomlxGraphPkgPath {
		panic(layoutErr("node %s: inputs holds *%s.%s, want *%s.%s", node, st.PkgPath(), st.Name(),
			gomlxGraphPkgPath, structName))
	}
	if st.NumField() != len(fields) {
		panic(layoutErr("%s has %d fields, want %d (%v)", structName, st.NumField(), len(fields), fields))
	}
	for i, name := range fields {
		if st.Field(i).Name != name {
			panic(layoutErr("%s field #%d is %q, want %q", structName, i, st.Field(i).Name, name))
		}
	}
	return ptr.Elem()
}

// intsField reads an unexported []int field (reflect allows reading, not Interface()).
func intsField(s reflect.Value, name string) []int {
	f := s.FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
		panic(layoutErr("%s.%s is not a []int", s.Type().Name(), name))
	}
	out := make([]int, f.Len())
	for i := range out {
		out[i] = int(f.Index(i).Int())
	}
	return out
}

// checkNodeField checks that the unexported *graph.Node field `name` points to want.
func checkNodeField(s reflect.Value, name string, want *graph.Node) {
	f := s.FieldByName(name)
	if !f.IsValid() || f.Type() != reflect.TypeFor[*graph.Node]() {
		panic(layoutErr("%s.%s is not a *graph.Node", s.Type().Name(), name))
	}
	if f.Pointer() != reflect.ValueOf(want).Pointer() {
		panic(layoutErr("%s.%s is not the node's matching input", s.Type().Name(), name))
	}
}

// dotGeneralParams are the parameters of a DotGeneral node.
type dotGeneralParams struct {
	lhs, rhs                           *graph.Node
	lhsContracting, lhsBatch           []int
	rhsContracting, rhsBatch           []int
	lhsCross, rhsCross                 []int // the remaining axes, in operand order
	numBatch, numLhsCross, numRhsCross int
}

// readDotGeneralParams reads a v0.26.0 nodeInputsDotGeneral:
//
//	lhs *Node; lhsContractingAxes, lhsBatchAxes []int; rhs *Node; rhsContractingAxes, rhsBatchAxes []int
func readDotGeneralParams(node *graph.Node) dotGeneralParams {
	if node.Type() != graph.NodeTypeDotGeneral {
		panic(layoutErr("node %s is not a DotGeneral", node))
	}
	s := nodeParams(node, "nodeInputsDotGeneral",
		"lhs", "lhsContractingAxes", "lhsBatchAxes", "rhs", "rhsContractingAxes", "rhsBatchAxes")
	in := node.Inputs()
	if len(in) != 2 {
		panic(layoutErr("DotGeneral node %s has %d inputs, want 2", node, len(in)))
	}
	p := dotGeneralParams{
		lhs:            in[0],
		rhs:            in[1],
		lhsContracting: intsField(s, "lhsContractingAxes"),
		lhsBatch:       intsField(s, "lhsBatchAxes"),
		rhsContracting: intsField(s, "rhsContractingAxes"),
		rhsBatch:       intsField(s, "rhsBatchAxes"),
	}
	checkNodeField(s, "lhs", p.lhs)
	checkNodeField(s, "rhs", p.rhs)
	if len(p.lhsContracting) != len(p.rhsContracting) || len(p.lhsBatch) != len(p.rhsBatch) {
		panic(layoutErr("DotGeneral node %s: axes counts differ between lhs and rhs", node))
	}
	p.lhsCross = crossAxes(p.lhs.Rank(), p.lhsContracting, p.lhsBatch)
	p.rhsCross = crossAxes(p.rhs.Rank(), p.rhsContracting, p.rhsBatch)
	p.numBatch, p.numLhsCross, p.numRhsCross = len(p.lhsBatch), len(p.lhsCross), len(p.rhsCross)
	if got := p.numBatch + p.numLhsCross + p.numRhsCross; got != node.Rank() {
		panic(layoutErr("DotGeneral node %s: output rank %d, but batch+cross axes = %d", node, node.Rank(), got))
	}
	return p
}

// crossAxes lists, in increasing order, the axes of a rank-`rank` operand that are neither
// contracting nor batch axes.
func crossAxes(rank int, contracting, batch []int) []int {
	used := make([]bool, rank)
	for _, a := range contracting {
		used[a] = true
	}
	for _, a := range batch {
		used[a] = true
	}
	var cross []int
	for a, u := range used {
		if !u {
			cross = append(cross, a)
		}
	}
	return cross
}

// iotaInts returns [start, start+1, ..., start+n-1].
func iotaInts(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}

// transposeToOperand permutes x, whose axis i corresponds to axis src[i] of the operand, into
// the operand's axis order.
func transposeToOperand(x *graph.Node, src []int) *graph.Node {
	perm := make([]int, len(src))
	identity := true
	for i, a := range src {
		perm[a] = i
		identity = identity && a == i
	}
	if identity {
		return x
	}
	return graph.TransposeAllAxes(x, perm...)
}

// remainingPaired returns, for the axes `thisContracting` sorted ascending (the order in which
// a DotGeneral outputs an operand's leftover axes), the paired axes of the other operand.
func remainingPaired(thisContracting, otherContracting []int) []int {
	sorted := slices.Sorted(slices.Values(thisContracting))
	out := make([]int, len(sorted))
	for j, a := range sorted {
		out[j] = otherContracting[slices.Index(thisContracting, a)]
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// The replacement VJPs.

// dotGeneralFastVJP is the textbook gradient of out = DotGeneral(lhs, rhs), whose axes are
// [batch..., lhs cross..., rhs cross...]. With v = ∂L/∂out:
//
//	∂L/∂lhs = DotGeneral(v, contract rhs-cross, rhs, contract rhsCross) → [batch, lhsCross, rhs's contracting (sorted)]
//	∂L/∂rhs = DotGeneral(lhs, contract lhsCross, v, contract lhs-cross) → [batch, lhs's contracting (sorted), rhsCross]
//
// each transposed back to its operand's axis order. Like GoMLX's own, it does not conjugate
// complex operands.
func dotGeneralFastVJP(node *graph.Node, vjpOutputs []*graph.Node, _ shapes.Shape) []*graph.Node {
	if len(vjpOutputs) != 1 {
		panic(fmt.Errorf("lm: DotGeneral VJP got %d adjoints, want 1", len(vjpOutputs)))
	}
	v := vjpOutputs[0]
	p := readDotGeneralParams(node)
	vBatch := iotaInts(0, p.numBatch)
	vLhsCross := iotaInts(p.numBatch, p.numLhsCross)
	vRhsCross := iotaInts(p.numBatch+p.numLhsCross, p.numRhsCross)

	// ∂L/∂lhs: output axes [batch (lhsBatch order), lhsCross, sorted(rhsContracting)].
	gLhs := graph.DotGeneral(v, vRhsCross, vBatch, p.rhs, p.rhsCross, p.rhsBatch)
	src := slices.Concat(p.lhsBatch, p.lhsCross, remainingPaired(p.rhsContracting, p.lhsContracting))
	gLhs = transposeToOperand(gLhs, src)

	// ∂L/∂rhs: output axes [batch (rhsBatch order), sorted(lhsContracting), rhsCross].
	gRhs := graph.DotGeneral(p.lhs, p.lhsCross, p.lhsBatch, v, vLhsCross, vBatch)
	src = slices.Concat(p.rhsBatch, remainingPaired(p.lhsContracting, p.rhsContracting), p.rhsCross)
	gRhs = transposeToOperand(gRhs, src)

	return []*graph.Node{gLhs, gRhs}
}

// sliceParams reads a v0.26.0 nodeInputsSlice: x *Node; starts, limits, strides []int.
func sliceParams(node *graph.Node) (x *graph.Node, starts, limits, strides []int) {
	if node.Type() != graph.NodeTypeSlice {
		panic(layoutErr("node %s is not a Slice", node))
	}
	s := nodeParams(node, "nodeInputsSlice", "x", "starts", "limits", "strides")
	in := node.Inputs()
	if len(in) != 1 {
		panic(layoutErr("Slice node %s has %d inputs, want 1", node, len(in)))
	}
	x = in[0]
	checkNodeField(s, "x", x)
	starts, limits, strides = intsField(s, "starts"), intsField(s, "limits"), intsField(s, "strides")
	if r := x.Rank(); len(starts) != r || len(limits) != r || len(strides) != r {
		panic(layoutErr("Slice node %s: starts/limits/strides lengths differ from rank %d", node, r))
	}
	return
}

// sliceConcatVJP is the gradient of a unit-stride Slice: the adjoint placed back into zeros,
// one Concatenate per axis that was cut. Strided slices use GoMLX's Pad-based gradient.
func sliceConcatVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	if len(vjpOutputs) != 1 {
		panic(fmt.Errorf("lm: Slice VJP got %d adjoints, want 1", len(vjpOutputs)))
	}
	x, starts, limits, strides := sliceParams(node)
	if slices.ContainsFunc(strides, func(s int) bool { return s > 1 }) {
		return stridedSliceVJP(node, vjpOutputs, outputShape, strides)
	}
	g := x.Graph()
	grad := vjpOutputs[0]
	dims := x.Shape().Dimensions
	for axis := range dims {
		before, after := starts[axis], dims[axis]-limits[axis]
		if before == 0 && after == 0 {
			continue
		}
		parts := make([]*graph.Node, 0, 3)
		if before > 0 {
			shape := grad.Shape().Clone()
			shape.Dimensions[axis] = before
			parts = append(parts, graph.Zeros(g, shape))
		}
		parts = append(parts, grad)
		if after > 0 {
			shape := grad.Shape().Clone()
			shape.Dimensions[axis] = after
			parts = append(parts, graph.Zeros(g, shape))
		}
		grad = graph.Concatenate(parts, axis)
	}
	return []*graph.Node{grad}
}

// stridedSliceVJP defers to GoMLX's Pad-based gradient, turning its failure (simplego has no
// Pad) into a clear error.
func stridedSliceVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape, strides []int) (
	res []*graph.Node) {
	defer func() {
		if r := recover(); r != nil {
			msg := "lm: the gradient of a Slice with non-unit strides %v is not supported on this backend " +
				"(GoMLX builds it with Pad, which the simplego backend lacks; lm's replacement handles unit strides only)"
			if err, ok := r.(error); ok {
				panic(fmt.Errorf(msg+": %w", strides, err))
			}
			panic(fmt.Errorf(msg+": %v", strides, r))
		}
	}()
	if origSliceVJP == nil {
		panic(errors.New("InstallGradientFixes has not saved the original Slice VJP"))
	}
	return origSliceVJP(node, vjpOutputs, outputShape)
}
