package dualmem

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/spotlight-lm/spotlight/lm"
)

// reluLike is n values of which about zeros are ±0 (the sign random, as in ReLU gradients),
// with the special values a float32 array can hold among the rest.
func reluLike(rng *rand.Rand, n int, zeros float64) []float32 {
	special := []float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), math.SmallestNonzeroFloat32, -math.MaxFloat32}
	v := make([]float32, n)
	for i := range v {
		switch {
		case rng.Float64() < zeros:
			v[i] = float32(math.Copysign(0, float64(rng.IntN(2)*2-1)))
		case rng.IntN(50) == 0:
			v[i] = special[rng.IntN(len(special))]
		default:
			v[i] = float32(rng.NormFloat64())
		}
	}
	return v
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %x, want %x", what, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
		}
	}
}

func TestSparseRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 63, 64, 65, 1000, 4096, 64*37 + 5} {
		for _, zeros := range []float64{0, 0.5, 0.9, 1} {
			v := reluLike(rng, n, zeros)
			buf := make([]byte, sparseMaxSize(n)+7)
			size := encodeSparse(buf, v)
			if got, err := sparseSize(buf[:size], n); err != nil || got != size {
				t.Fatalf("n=%d zeros=%g: sparseSize = %d, %v; encoded %d", n, zeros, got, err, size)
			}
			got := make([]float32, n)
			for i := range got {
				got[i] = 1 // decodeSparse must overwrite every value, zeros included
			}
			decodeSparse(got, buf)
			sameBits(t, "decoded", got, v)
			// The vector encoder (where the CPU has one) and the portable loop agree.
			portable := make([]byte, len(buf))
			if end := encodeSparseGo(portable, v, 0, 16*sparseWords(n)); !bytes.Equal(portable[:end], buf[:size]) {
				t.Fatalf("n=%d zeros=%g: the portable encoding differs", n, zeros)
			}
			if nz := 0; zeros == 1 {
				for _, x := range v {
					if x != 0 {
						nz++
					}
				}
				if size != 16*sparseWords(n)+4*nz {
					t.Errorf("n=%d all zero: %d bytes", n, size)
				}
			}
		}
	}
}

// TestSparseCorrupt checks that a damaged encoding is refused, not misread.
func TestSparseCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	v := reluLike(rng, 100, 0.9)
	v[3] = 1.5 // a non-zero in the first group, for the sign case
	buf := make([]byte, sparseMaxSize(len(v)))
	good := buf[:encodeSparse(buf, v)]
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"truncated masks", good[:20]},
		{"truncated values", good[:len(good)-1]},
		{"zero bit past the end", withBit(good, 16+7, 0x80)}, // second group's zero mask, bit 63: value 127 of 100
		{"sign of a non-zero", withBit(good, 8, 1<<3)},       // first group's sign mask, value 3
	} {
		if _, err := sparseSize(tc.b, len(v)); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func withBit(b []byte, i int, bits byte) []byte {
	c := append([]byte(nil), b...)
	c[i] |= bits
	return c
}

// TestLayerRecordSparse checks the layer record: a ReLU-like array is stored sparse, a dense
// one as it is, both decode bit for bit, and a record whose length or flags are off is
// refused.
func TestLayerRecordSparse(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ls := lm.LayerStep{Keys: reluLike(rng, 64*512, 0.9), Grads: reluLike(rng, 64*128, 0)}
	rec := encodeLayer(F32, ls)[blobHeader:]
	if rec[1] != sparseKeys {
		t.Fatalf("flags %b, want keys sparse only", rec[1])
	}
	if dense := layerHeader + 4*(len(ls.Keys)+len(ls.Grads)); len(rec) > dense*6/10 {
		t.Errorf("record %d bytes, dense %d: sparse keys saved too little", len(rec), dense)
	}
	keys, grads := make([]float32, len(ls.Keys)), make([]float32, len(ls.Grads))
	if err := decodeLayer(rec, keys, grads); err != nil {
		t.Fatal(err)
	}
	sameBits(t, "keys", keys, ls.Keys)
	sameBits(t, "grads", grads, ls.Grads)

	for _, bad := range [][]byte{rec[:len(rec)-4], append(append([]byte(nil), rec...), 0, 0, 0, 0), withBit(rec, 1, 4)} {
		if err := decodeLayer(bad, keys, grads); err == nil {
			t.Errorf("a %d-byte record with flags %b was accepted", len(bad), bad[1])
		}
	}

	// Through the entries the store writes: sparse only where the format allows it.
	for _, sparse := range []bool{true, false} {
		es, _ := layerEntries([]byte{pLayer}, F32, ls, nil, sparse)
		var blob []byte
		for _, e := range es {
			blob = append(blob, e.Value...)
		}
		if got := blob[blobHeader+1] != 0; got != sparse {
			t.Errorf("sparse allowed %v: record flagged sparse %v", sparse, got)
		}
		if err := decodeLayer(blob[blobHeader:], keys, grads); err != nil {
			t.Fatal(err)
		}
		sameBits(t, "keys via entries", keys, ls.Keys)
	}
}

// TestStoreSparse writes a step with a ReLU-like layer to a new store and to one of format 1:
// the new one stores it sparse, format 1 dense (its older readers know no sparse records),
// and both read it back bit for bit after reopening.
func TestStoreSparse(t *testing.T) {
	for _, format := range []int{1, FormatVersion} {
		t.Run(fmt.Sprint("format", format), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 10))
			dir := t.TempDir()
			meta := testMeta(F32)
			mustCreate(t, dir, meta, rng).Close()
			setFormat(t, dir, format)
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			st := makeStep(meta, 1, 16, 8, rng)
			ls := st.Layers["block0.ff1"]
			ls.Keys = reluLike(rng, len(ls.Keys), 0.9)
			st.Layers["block0.ff1"] = ls
			want := lm.LayerStep{Keys: slices.Clone(ls.Keys), Grads: slices.Clone(ls.Grads)}
			if err := s.AppendStep(st); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(1, []byte("ckpt")); err != nil {
				t.Fatal(err)
			}
			r := reopenReadOnly(t, s, dir)
			if r.Meta().Format != format {
				t.Errorf("format %d after writing, want %d", r.Meta().Format, format)
			}
			got, err := r.ReadStep(1)
			if err != nil {
				t.Fatal(err)
			}
			sameBits(t, "keys", got.Layers["block0.ff1"].Keys, want.Keys)
			sameBits(t, "grads", got.Layers["block0.ff1"].Grads, want.Grads)
			var flags byte
			err = r.db.View(func(txn *badger.Txn) error {
				return readInto(txn, stepKey(layerPrefix(0), 1), func(b []byte) error { flags = b[1]; return nil })
			})
			if err != nil {
				t.Fatal(err)
			}
			if wantFlags := map[bool]byte{true: sparseKeys, false: 0}[format >= sparseFormat]; flags != wantFlags {
				t.Errorf("record flags %b, want %b", flags, wantFlags)
			}
		})
	}
}
