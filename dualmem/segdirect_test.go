package dualmem

import (
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
