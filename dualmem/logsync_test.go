package dualmem

import (
	"bytes"
	"os"
	"testing"
)

// Badger's value-log files as it makes them: sized ahead (here 8 MiB), written from the start.
func vlogFile(t *testing.T, v *logSync, id int, data []byte) {
	t.Helper()
	f, err := os.Create(v.path(id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
}

// The newest value-log file is allocated ahead of what was written to it, within its size,
// without changing its size or what it reads; a rotation starts the estimate afresh.
func TestLogSyncAllocatesAhead(t *testing.T) {
	v := newLogSync(t.TempDir())
	defer v.close()
	held := bytes.Repeat([]byte{7}, 1<<20)
	vlogFile(t, v, 1, held)

	check := func(id int, wantData []byte) {
		t.Helper()
		fi, err := os.Stat(v.path(id))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != 8<<20 {
			t.Fatalf("file %d: size %d, want %d unchanged", id, fi.Size(), 8<<20)
		}
		if v.noAlloc {
			t.Skip("this file system does not allocate ahead")
		}
		if got := allocated(fi); got < 8<<20 { // 1 MiB held + 64 MiB ahead, capped at the size
			t.Fatalf("file %d: %d bytes allocated, want all %d", id, got, 8<<20)
		}
		b, err := os.ReadFile(v.path(id))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[:len(wantData)], wantData) || bytes.ContainsFunc(b[len(wantData):], func(r rune) bool { return r != 0 }) {
			t.Fatalf("file %d: contents changed", id)
		}
	}
	v.written(100)
	if v.cur != 1 || v.wrote < int64(len(held)) {
		t.Fatalf("after open: file %d, estimate %d; want file 1 and at least the %d bytes it holds", v.cur, v.wrote, len(held))
	}
	check(1, held)

	vlogFile(t, v, 2, []byte{1, 2, 3})
	v.written(3)
	if v.cur != 2 || v.wrote > 1<<20 {
		t.Fatalf("after rotation: file %d, estimate %d; want file 2 and a small estimate", v.cur, v.wrote)
	}
	check(2, []byte{1, 2, 3})
}
