package dualmem

import (
	"bytes"
	"encoding/binary"
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

// TestAppendChunks checks the split of a value into chunks: in order, numbered from first,
// nothing lost, and no last chunk shorter than tail unless the value itself is.
func TestAppendChunks(t *testing.T) {
	for _, tc := range []struct{ n, size, tail, want int }{
		{0, 10, 0, 1}, {5, 10, 0, 1}, {10, 10, 0, 1}, {11, 10, 0, 2}, {25, 10, 0, 3},
		{25, 10, 6, 2}, {25, 10, 5, 3}, {3, 10, 6, 1}, {1000, 100, 64, 10}, {1010, 100, 64, 10},
	} {
		data := make([]byte, tc.n)
		for i := range data {
			data[i] = byte(i)
		}
		es := appendChunks(nil, []byte("base"), 3, data, tc.size, tc.tail)
		var got []byte
		for i, e := range es {
			if want := binary.BigEndian.AppendUint32([]byte("base"), uint32(3+i)); !bytes.Equal(e.Key, want) {
				t.Errorf("%+v: chunk %d has key %q", tc, i, e.Key)
			}
			if i == len(es)-1 && len(es) > 1 && len(e.Value) < tc.tail {
				t.Errorf("%+v: last chunk of %d bytes", tc, len(e.Value))
			}
			got = append(got, e.Value...)
		}
		if len(es) != tc.want || !bytes.Equal(got, data) {
			t.Errorf("%+v: %d chunks holding %d bytes, want %d chunks of %d", tc, len(es), len(got), tc.want, tc.n)
		}
	}
}
