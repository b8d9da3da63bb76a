package dualmem

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// Steps large enough for direct writes, whose sizes are not multiples of a page: the segment
// files hold exactly what the database holds, through appends at unaligned offsets, a discard
// of uncommitted steps and a reopen.
func TestDirectSegmentWrites(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	meta := testMeta(F32)
	meta.Layers = []LayerSpec{{Name: "block0.ff1", DIn: 300, DOut: 7}, {Name: "out", DIn: 5, DOut: 3}}
	s := mustCreate(t, dir, meta, rng)
	add := func(from, to int) {
		for i := from; i <= to; i++ {
			// 111 or 148 tokens: 133,200 or 177,600 key bytes, neither a multiple of 4096
			if err := s.AppendStep(makeStep(meta, i, 3+i%2, 37, rng)); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(1, 5)
	if err := s.Commit(3, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DiscardUncommitted(); err != nil {
		t.Fatal(err)
	}
	add(4, 6)
	if err := s.Commit(6, nil); err != nil {
		t.Fatal(err)
	}
	sg := s.segments()
	if sg == nil {
		t.Fatal("no segment files")
	}
	supported := openDirect(filepath.Join(sg.dir, segIndexName)) != nil
	if got := sg.direct[nTokenFiles] != nil; got != supported {
		t.Fatalf("direct writes to the keys file: %v; offered by this file system: %v", got, supported)
	}
	if !supported {
		t.Log("this file system offers no direct writes: the page-cache path was tested")
	}
	sameMemory(t, s, 6)
	if err := sg.checkSteps(1, 6); err != nil {
		t.Fatal(err)
	}
	r := reopenReadOnly(t, s, dir)
	if r.segments() == nil {
		t.Fatal("the segment files were not valid on reopening")
	}
	sameMemory(t, r, 6)
}

// A segment write folds exactly the bytes it writes into the step's checksum, whatever the
// file offset, the length and the buffer's alignment in memory, on the direct and the
// page-cache paths alike.
func TestSegmentWriteChecksum(t *testing.T) {
	sg, err := createSegments(t.TempDir(), testMeta(F32))
	if err != nil {
		t.Fatal(err)
	}
	defer sg.close()
	rng := rand.New(rand.NewPCG(5, 6))
	pool := alignedBuffer(4<<20 + 64)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	const file = nTokenFiles // the first layer's keys
	var off int64
	for _, tc := range []struct {
		name       string
		skip, size int // where in the aligned pool the data starts, and its length
	}{
		{"small", 0, 10},
		{"below the direct minimum", 3, directMin - 1},
		{"aligned in memory", 0, 3*directStage + 4099},
		{"unaligned in memory", 1, 2*directStage + 17},
		{"one stage", 4096 - 8, directStage},
		{"word-aligned", 4, 5*directMin + 1},
	} {
		b := pool[tc.skip : tc.skip+tc.size]
		var crc uint32
		if err := sg.writeAt(file, b, off, &crc); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := crc32.Checksum(b, crcTable); crc != want {
			t.Errorf("%s: checksum %08x, want %08x", tc.name, crc, want)
		}
		got := make([]byte, len(b))
		if _, err := sg.out[file].ReadAt(got, off); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s: the file does not hold the bytes written", tc.name)
		}
		off += int64(tc.size)
	}
}
