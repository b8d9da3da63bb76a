package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// TileSource is the real memory a size sweep tiles: one layer of a trained data directory
// with what a new directory needs to serve it (metadata, corpus, initial weights and the
// last checkpoint).
type TileSource struct {
	meta    dualmem.Meta // only the tiled layer
	corpus  []byte
	initial lm.Initial
	ckpt    []byte
	mem     *dualmem.LayerMemory
}

// OpenTileSource reads layer of store for tiling; store must stay open while it is used.
func OpenTileSource(store *dualmem.Store, layer string) (*TileSource, error) {
	mems, err := store.Memory(store.Steps(), nil)
	if err != nil {
		return nil, err
	}
	src := &TileSource{meta: store.Meta(), corpus: store.Corpus()}
	for i, l := range src.meta.Layers {
		if l.Name == layer {
			src.mem = mems[i]
			src.meta.Layers = []dualmem.LayerSpec{l}
		}
	}
	if src.mem == nil {
		return nil, fmt.Errorf("%s has no layer %q", store.Dir(), layer)
	}
	if len(src.mem.Steps) < 2 {
		return nil, fmt.Errorf("%s: layer %q holds %d steps; tiling needs at least 2", store.Dir(), layer, len(src.mem.Steps))
	}
	if src.initial, err = store.Initial(layer); err != nil {
		return nil, err
	}
	if _, src.ckpt, err = store.Checkpoint(); err != nil {
		return nil, err
	}
	return src, nil
}

// tileBytes estimates what a tiled directory of n tokens takes on disk: the segment files
// hold every key and gradient, the token arrays, per-step aggregates and block bounds with
// the int8 codes; unless segmentsOnly the database holds the keys and gradients again.
func tileBytes(meta dualmem.Meta, n int, segmentsOnly bool) int64 {
	l := meta.Layers[0]
	perStep := 8 * (l.DIn*l.DOut + l.DIn + l.DOut)
	b := int64(n) * int64(4*(l.DIn+l.DOut)+12+24+perStep/512+l.DIn+l.DOut+8*(l.DIn+l.DOut)/64+8)
	if !segmentsOnly {
		b += int64(n) * int64(4*(l.DIn+l.DOut))
	}
	return b
}

// BuildTiled writes a data directory of about n training tokens at dir through the store's
// own write path (segment files, aggregates and bounds as training writes them, and the
// database: with segmentsOnly, one without the keys and gradients, see
// dualmem.Meta.SegmentsOnly): the source's steps but its last, repeated in order, each key
// and gradient value scaled by 1 + 0.02·N(0,1) so that the copies are not exact ties (what
// dualmem's BenchmarkSearch tiles in memory). The learning-rate schedule repeats with the
// steps. It returns the number of steps written; a cancelled ctx stops it between steps.
func BuildTiled(ctx context.Context, src *TileSource, dir string, n int, segmentsOnly bool, progress func(done, total int)) (int, error) {
	in := map[string]lm.Initial{src.meta.Layers[0].Name: src.initial}
	meta := src.meta
	meta.SegmentsOnly = segmentsOnly
	store, err := dualmem.Create(dir, meta, src.corpus, in, src.ckpt)
	if err != nil {
		return 0, err
	}
	m, spec := src.mem, meta.Layers[0]
	din, dout := spec.DIn, spec.DOut
	base := m.Steps[:len(m.Steps)-1]
	starts := make([]int, len(base)+1)
	for k, si := range base {
		starts[k+1] = starts[k] + si.Tokens()
	}
	total := 0
	for k := 0; total+base[k%len(base)].Tokens() <= n; k++ {
		total += base[k%len(base)].Tokens()
	}
	rng := rand.New(rand.NewPCG(13, 13))
	noise := make([]float32, 4096)
	for i := range noise {
		noise[i] = float32(1 + 0.02*rng.NormFloat64())
	}
	steps, done := 0, 0
	for done < total {
		if err := ctx.Err(); err != nil {
			store.Close()
			return 0, err
		}
		k := steps % len(base)
		si := base[k]
		si.Step = steps + 1
		a, t := starts[k], si.Tokens()
		st := &lm.Step{StepInfo: si, Offsets: append([]int64(nil), m.Offsets[a:a+t]...),
			Targets: append([]int32(nil), m.Targets[a:a+t]...),
			Layers:  map[string]lm.LayerStep{spec.Name: {Keys: make([]float32, t*din), Grads: make([]float32, t*dout)}}}
		ls := st.Layers[spec.Name]
		for j := range t {
			o := rng.IntN(len(noise) - din - dout)
			for i, v := range m.Keys[(a+j)*din : (a+j+1)*din] {
				ls.Keys[j*din+i] = v * noise[o+i]
			}
			for i, v := range m.Grads[(a+j)*dout : (a+j+1)*dout] {
				ls.Grads[j*dout+i] = v * noise[o+din+i]
			}
		}
		if err := store.AppendStep(st); err != nil {
			store.Close()
			return 0, err
		}
		steps++
		done += t
		if steps%1000 == 0 {
			if err := store.Commit(steps, src.ckpt); err != nil {
				store.Close()
				return 0, err
			}
			if progress != nil {
				progress(done, total)
			}
		}
	}
	err = store.Commit(steps, src.ckpt)
	return steps, errors.Join(err, store.Close())
}

// copyDataDir copies a data directory file by file (the source is only read).
func copyDataDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		return errors.Join(err, out.Close())
	})
}
