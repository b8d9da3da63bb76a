package gomlxpatch

// The gradient patches: two VJPs in graph.VJPRegistration replaced.
//
//   - DotGeneral: GoMLX v0.26.0 builds it as a broadcast multiply plus a reduce-sum, which
//     materialises e.g. a [tokens, in, out] tensor for a dense layer; simplego executes that
//     literally. The replacement is the textbook gradient: two DotGenerals plus transposes.
//   - Slice: GoMLX's gradient uses Pad, which simplego lacks, so backprop through any Slice
//     fails there. The replacement concatenates the adjoint with zeros (unit strides only;
//     strided slices fall back to GoMLX's Pad-based gradient, which works on backends with Pad).
//
// Both read unexported fields of graph nodes with package reflect, checking the v0.26.0 layout
// on every use: a node that does not match gets GoMLX's own gradient (and one warning).

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// gomlxGraphPkgPath is the import path of the package that owns the unexported node types.
const gomlxGraphPkgPath = "github.com/gomlx/gomlx/pkg/core/graph"

var (
	gradOnce                    sync.Once
	dotGeneralVJPOn, sliceVJPOn bool

	// origDotGeneralVJP and origSliceVJP are GoMLX's own VJPs, saved by installGradients
	// (the fallbacks, and the references of the self-tests, tests and benchmarks).
	origDotGeneralVJP graph.VJP
	origSliceVJP      graph.VJP

	// corruptVJPForTest makes the fast DotGeneral gradient wrong, to test that the self-test
	// catches it.
	corruptVJPForTest bool
)

// vjpPatch is one gradient replacement.
type vjpPatch struct {
	name     string
	nodeType graph.NodeType
	vjp      graph.VJP
	selfTest func(backends.Backend) error
}

// installGradients registers the gradient patches that pass their self-test on backend, once
// per process, and reports which are on. VJPRegistration is a plain map read while gradients
// are built: this runs when the first backend is created, before any graph is built.
func installGradients(backend backends.Backend) (dotGeneral, slice bool) {
	gradOnce.Do(func() {
		origDotGeneralVJP = graph.VJPRegistration[graph.NodeTypeDotGeneral]
		origSliceVJP = graph.VJPRegistration[graph.NodeTypeSlice]
		dotGeneralVJPOn = installVJP(vjpPatch{patchDotGeneralVJP, graph.NodeTypeDotGeneral, dotGeneralVJP,
			dotGeneralVJPSelfTest}, backend, versionErr())
		sliceVJPOn = installVJP(vjpPatch{patchSliceVJP, graph.NodeTypeSlice, sliceVJP, sliceVJPSelfTest},
			backend, versionErr())
	})
	return dotGeneralVJPOn, sliceVJPOn
}

// installVJP registers p unless verr (the version check) or its self-test fails, in which case
// GoMLX's own VJP stays and one warning says why.
func installVJP(p vjpPatch, backend backends.Backend, verr error) bool {
	err := verr
	if err == nil && graph.VJPRegistration[p.nodeType] == nil {
		err = fmt.Errorf("graph.VJPRegistration has no entry for %s", p.nodeType)
	}
	if err == nil {
		if err = checkGoMLXNodeLayout(); err == nil {
			err = p.selfTest(backend)
		}
	}
	if err != nil {
		fallBack(p.name, err)
		return false
	}
	graph.VJPRegistration[p.nodeType] = p.vjp
	return true
}

// ---------------------------------------------------------------------------------------------
// Reading the unexported node parameters.

// graphLayoutErr builds the error returned when GoMLX's internals are not as expected.
func graphLayoutErr(format string, args ...any) error {
	return fmt.Errorf("GoMLX's graph node layout differs from %s's: %s", PinnedVersion, fmt.Sprintf(format, args...))
}

// checkGoMLXNodeLayout verifies, without a graph, that graph.Node still has the unexported
// "inputs" interface field the VJPs read. The concrete parameter structs are checked on use.
func checkGoMLXNodeLayout() error {
	f, ok := reflect.TypeFor[graph.Node]().FieldByName("inputs")
	if !ok || f.Type.Kind() != reflect.Interface || f.Type.Name() != "NodeInputs" {
		return graphLayoutErr("graph.Node has no field `inputs NodeInputs`")
	}
	return nil
}

// graphNodeParams returns the struct (not the pointer) held in node.inputs, checking that it is
// *graph.<structName> with exactly the fields listed, in that order.
func graphNodeParams(node *graph.Node, structName string, fields ...string) (reflect.Value, error) {
	inputs := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !inputs.IsValid() || inputs.Kind() != reflect.Interface {
		return reflect.Value{}, graphLayoutErr("graph.Node has no interface field `inputs`")
	}
	if inputs.IsNil() {
		return reflect.Value{}, graphLayoutErr("node %s has nil inputs", node)
	}
	ptr := inputs.Elem()
	if ptr.Kind() != reflect.Pointer || ptr.Type().Elem().Kind() != reflect.Struct {
		return reflect.Value{}, graphLayoutErr("node %s: inputs holds %s, want *%s", node, ptr.Type(), structName)
	}
	st := ptr.Type().Elem()
	if st.Name() != structName || st.PkgPath() != gomlxGraphPkgPath {
		return reflect.Value{}, graphLayoutErr("node %s: inputs holds *%s.%s, want *%s.%s", node, st.PkgPath(), st.Name(),
			gomlxGraphPkgPath, structName)
	}
	if st.NumField() != len(fields) {
		return reflect.Value{}, graphLayoutErr("%s has %d fields, want %d (%v)", structName, st.NumField(), len(fields), fields)
	}
	for i, name := range fields {
		if st.Field(i).Name != name {
			return reflect.Value{}, graphLayoutErr("%s field #%d is %q, want %q", structName, i, st.Field(i).Name, name)
		}
	}
	return ptr.Elem(), nil
}

// fieldReader reads fields of one parameter struct, keeping the first error.
type fieldReader struct {
	s   reflect.Value
	err error
}

// ints reads an unexported []int field (reflect allows reading, not Interface()).
func (r *fieldReader) ints(name string) []int {
	f := r.s.FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
		r.err = cmp.Or(r.err, graphLayoutErr("%s.%s is not a []int", r.s.Type().Name(), name))
		return nil
	}
	out := make([]int, f.Len())
	for i := range out {
		out[i] = int(f.Index(i).Int())
	}
	return out
}

// node checks that the unexported *graph.Node field `name` points to want.
func (r *fieldReader) node(name string, want *graph.Node) {
	f := r.s.FieldByName(name)
	switch {
	case !f.IsValid() || f.Type() != reflect.TypeFor[*graph.Node]():
		r.err = cmp.Or(r.err, graphLayoutErr("%s.%s is not a *graph.Node", r.s.Type().Name(), name))
	case f.Pointer() != reflect.ValueOf(want).Pointer():
		r.err = cmp.Or(r.err, graphLayoutErr("%s.%s is not the node's matching input", r.s.Type().Name(), name))
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
func readDotGeneralParams(node *graph.Node) (dotGeneralParams, error) {
	if node.Type() != graph.NodeTypeDotGeneral {
		return dotGeneralParams{}, graphLayoutErr("node %s is not a DotGeneral", node)
	}
	s, err := graphNodeParams(node, "nodeInputsDotGeneral",
		"lhs", "lhsContractingAxes", "lhsBatchAxes", "rhs", "rhsContractingAxes", "rhsBatchAxes")
	if err != nil {
		return dotGeneralParams{}, err
	}
	in := node.Inputs()
	if len(in) != 2 {
		return dotGeneralParams{}, graphLayoutErr("DotGeneral node %s has %d inputs, want 2", node, len(in))
	}
	r := fieldReader{s: s}
	p := dotGeneralParams{
		lhs:            in[0],
		rhs:            in[1],
		lhsContracting: r.ints("lhsContractingAxes"),
		lhsBatch:       r.ints("lhsBatchAxes"),
		rhsContracting: r.ints("rhsContractingAxes"),
		rhsBatch:       r.ints("rhsBatchAxes"),
	}
	r.node("lhs", p.lhs)
	r.node("rhs", p.rhs)
	if r.err != nil {
		return dotGeneralParams{}, r.err
	}
	if len(p.lhsContracting) != len(p.rhsContracting) || len(p.lhsBatch) != len(p.rhsBatch) {
		return dotGeneralParams{}, graphLayoutErr("DotGeneral node %s: axes counts differ between lhs and rhs", node)
	}
	for _, axes := range []struct {
		rank int
		ax   []int
	}{{p.lhs.Rank(), p.lhsContracting}, {p.lhs.Rank(), p.lhsBatch}, {p.rhs.Rank(), p.rhsContracting}, {p.rhs.Rank(), p.rhsBatch}} {
		if slices.ContainsFunc(axes.ax, func(a int) bool { return a < 0 || a >= axes.rank }) {
			return dotGeneralParams{}, graphLayoutErr("DotGeneral node %s: axis out of range in %v", node, axes.ax)
		}
	}
	p.lhsCross = crossAxes(p.lhs.Rank(), p.lhsContracting, p.lhsBatch)
	p.rhsCross = crossAxes(p.rhs.Rank(), p.rhsContracting, p.rhsBatch)
	p.numBatch, p.numLhsCross, p.numRhsCross = len(p.lhsBatch), len(p.lhsCross), len(p.rhsCross)
	if got := p.numBatch + p.numLhsCross + p.numRhsCross; got != node.Rank() {
		return dotGeneralParams{}, graphLayoutErr("DotGeneral node %s: output rank %d, but batch+cross axes = %d", node, node.Rank(), got)
	}
	return p, nil
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

// dotGeneralVJP is the registered DotGeneral gradient: the fast one, or GoMLX's own for a node
// it cannot read.
func dotGeneralVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	grads, err := dotGeneralFastVJP(node, vjpOutputs)
	if err != nil {
		fallBack(patchDotGeneralVJP, err)
		return origDotGeneralVJP(node, vjpOutputs, outputShape)
	}
	return grads
}

// dotGeneralFastVJP is the textbook gradient of out = DotGeneral(lhs, rhs), whose axes are
// [batch..., lhs cross..., rhs cross...]. With v = ∂L/∂out:
//
//	∂L/∂lhs = DotGeneral(v, contract rhs-cross, rhs, contract rhsCross) → [batch, lhsCross, rhs's contracting (sorted)]
//	∂L/∂rhs = DotGeneral(lhs, contract lhsCross, v, contract lhs-cross) → [batch, lhs's contracting (sorted), rhsCross]
//
// each transposed back to its operand's axis order. Like GoMLX's own, it does not conjugate
// complex operands.
func dotGeneralFastVJP(node *graph.Node, vjpOutputs []*graph.Node) ([]*graph.Node, error) {
	if len(vjpOutputs) != 1 {
		return nil, fmt.Errorf("the DotGeneral VJP got %d adjoints, want 1", len(vjpOutputs))
	}
	v := vjpOutputs[0]
	p, err := readDotGeneralParams(node)
	if err != nil {
		return nil, err
	}
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
	if corruptVJPForTest {
		gLhs = graph.MulScalar(gLhs, 1.01)
	}
	return []*graph.Node{gLhs, gRhs}, nil
}

// sliceParams reads a v0.26.0 nodeInputsSlice: x *Node; starts, limits, strides []int.
func sliceParams(node *graph.Node) (x *graph.Node, starts, limits, strides []int, err error) {
	if node.Type() != graph.NodeTypeSlice {
		return nil, nil, nil, nil, graphLayoutErr("node %s is not a Slice", node)
	}
	s, err := graphNodeParams(node, "nodeInputsSlice", "x", "starts", "limits", "strides")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	in := node.Inputs()
	if len(in) != 1 {
		return nil, nil, nil, nil, graphLayoutErr("Slice node %s has %d inputs, want 1", node, len(in))
	}
	x = in[0]
	r := fieldReader{s: s}
	r.node("x", x)
	starts, limits, strides = r.ints("starts"), r.ints("limits"), r.ints("strides")
	if r.err != nil {
		return nil, nil, nil, nil, r.err
	}
	if rank := x.Rank(); len(starts) != rank || len(limits) != rank || len(strides) != rank {
		return nil, nil, nil, nil, graphLayoutErr("Slice node %s: starts/limits/strides lengths differ from rank %d", node, rank)
	}
	return x, starts, limits, strides, nil
}

// sliceVJP is the registered Slice gradient: the Concatenate-based one for unit strides,
// GoMLX's own (Pad-based) for strided slices and for a node it cannot read.
func sliceVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	x, starts, limits, strides, err := sliceParams(node)
	if err == nil && len(vjpOutputs) != 1 {
		err = fmt.Errorf("the Slice VJP got %d adjoints, want 1", len(vjpOutputs))
	}
	if err != nil {
		fallBack(patchSliceVJP, err)
		return origSliceVJP(node, vjpOutputs, outputShape)
	}
	if slices.ContainsFunc(strides, func(s int) bool { return s > 1 }) {
		return stridedSliceVJP(node, vjpOutputs, outputShape, strides)
	}
	return []*graph.Node{sliceConcatVJP(x, starts, limits, vjpOutputs[0])}
}

// sliceConcatVJP is the gradient of a unit-stride Slice of x: the adjoint grad placed back into
// zeros, one Concatenate per axis that was cut.
func sliceConcatVJP(x *graph.Node, starts, limits []int, grad *graph.Node) *graph.Node {
	g := x.Graph()
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
	return grad
}

// stridedSliceVJP defers to GoMLX's Pad-based gradient, turning its failure (simplego has no
// Pad) into a clear error. This is not a patch mismatch: GoMLX's own gradient is what fails.
func stridedSliceVJP(node *graph.Node, vjpOutputs []*graph.Node, outputShape shapes.Shape, strides []int) (
	res []*graph.Node) {
	defer func() {
		if r := recover(); r != nil {
			msg := "gomlxpatch: the gradient of a Slice with non-unit strides %v is not supported on this backend " +
				"(GoMLX builds it with Pad, which the simplego backend lacks; the replacement handles unit strides only)"
			if err, ok := r.(error); ok {
				panic(fmt.Errorf(msg+": %w", strides, err))
			}
			panic(fmt.Errorf(msg+": %v", strides, r))
		}
	}()
	if origSliceVJP == nil {
		panic(errors.New("gomlxpatch: the original Slice VJP was not saved"))
	}
	return origSliceVJP(node, vjpOutputs, outputShape)
}
