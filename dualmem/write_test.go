package dualmem

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// TestStepChunks stores layer records in chunks much smaller than a layer's vectors and
// checks that the database holds exactly the blob encodeLayer makes, that reads return the
// step bit for bit, and that segments rebuilt from the database match it.
func TestStepChunks(t *testing.T) {
	for _, tc := range []struct {
		p     Precision
		chunk int
	}{{F32, 100}, {F32, 7}, {F32, 1 << 20}, {F16, 100}, {F16, 1 << 20}} {
		t.Run(fmt.Sprintf("%s/%d", tc.p, tc.chunk), func(t *testing.T) {
			old := stepChunk
			stepChunk = tc.chunk
			defer func() { stepChunk = old }()
			rng := rand.New(rand.NewPCG(11, uint64(tc.chunk)))
			dir := t.TempDir()
			s := mustCreate(t, dir, testMeta(tc.p), rng)
			steps := appendSteps(t, s, 1, 3, rng)
			if err := s.Commit(3, []byte("ckpt")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(dir, SegmentsDir)); err != nil { // rebuilt from the database
				t.Fatal(err)
			}
			r, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for _, st := range steps {
				got, err := r.ReadStep(st.Step)
				if err != nil {
					t.Fatal(err)
				}
				for i, l := range r.Meta().Layers {
					want := encodeLayer(tc.p, st.Layers[l.Name])[blobHeader:]
					err := r.db.View(func(txn *badger.Txn) error {
						return readInto(txn, stepKey(layerPrefix(i), st.Step), func(b []byte) error {
							if !bytes.Equal(b, want) {
								t.Errorf("step %d layer %s: stored record differs from encodeLayer's", st.Step, l.Name)
							}
							return nil
						})
					})
					if err != nil {
						t.Fatal(err)
					}
					keys := make([]float32, len(st.Layers[l.Name].Keys))
					grads := make([]float32, len(st.Layers[l.Name].Grads))
					if err := decodeLayer(want, keys, grads); err != nil {
						t.Fatal(err)
					}
					closeEnough(t, l.Name+" keys", got.Layers[l.Name].Keys, keys, 0)
					closeEnough(t, l.Name+" grads", got.Layers[l.Name].Grads, grads, 0)
				}
			}
			sameMemory(t, r, 3)
		})
	}
}
