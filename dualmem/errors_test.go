package dualmem

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

func TestCreateOnNonEmpty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir, testMeta(F32), nil, testInitial(testMeta(F32), rng), nil); !errors.Is(err, ErrNotSpotlight) {
		t.Fatalf("Create on a foreign dir: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("Create wrote into a foreign dir: %v", ents)
	}
	if _, err := Open(dir); !errors.Is(err, ErrNoModel) {
		t.Fatalf("Open on a dir without db: %v", err)
	}

	dir = t.TempDir()
	mustCreate(t, dir, testMeta(F32), rng).Close()
	if _, err := Create(dir, testMeta(F32), nil, testInitial(testMeta(F32), rng), nil); !errors.Is(err, ErrExists) ||
		!strings.Contains(err.Error(), "already holds a model") {
		t.Fatalf("Create on a Spotlight dir: %v", err)
	}
}

func TestForeignBadger(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badgerOptions(filepath.Join(dir, "db"), false))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	if _, err := Open(dir); !errors.Is(err, ErrNotSpotlight) {
		t.Fatalf("Open on a foreign Badger db: %v", err)
	}
	if _, err := OpenReadOnly(dir); !errors.Is(err, ErrNotSpotlight) {
		t.Fatalf("OpenReadOnly on a foreign Badger db: %v", err)
	}
	if _, err := Create(dir, testMeta(F32), nil, testInitial(testMeta(F32), rng), nil); !errors.Is(err, ErrNotSpotlight) {
		t.Fatalf("Create on a foreign Badger db: %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "nothing"), t.TempDir()} {
		if _, err := Open(dir); !errors.Is(err, ErrNoModel) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("Open(%s): %v", dir, err)
		}
		if _, err := OpenReadOnly(dir); !errors.Is(err, ErrNoModel) {
			t.Fatalf("OpenReadOnly(%s): %v", dir, err)
		}
	}
}

func TestFormatMismatch(t *testing.T) {
	dir := t.TempDir()
	mustCreate(t, dir, testMeta(F32), rand.New(rand.NewPCG(1, 1))).Close()
	setFormat(t, dir, 99)
	_, err := Open(dir)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "format 99") || !strings.Contains(err.Error(), "formats 1 and 2") {
		t.Fatalf("Open of a format-99 dir: %v", err)
	}
}

// setFormat rewrites the format number in the metadata of the closed store in dir.
func setFormat(t *testing.T, dir string, format int) {
	t.Helper()
	db, err := badger.Open(badgerOptions(filepath.Join(dir, "db"), false))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		mj, err := getValue(txn, keyMeta)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(mj, &m); err != nil {
			return err
		}
		m["format"] = format
		mj, _ = json.Marshal(m)
		return txn.Set(keyMeta, mj)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 1))
	s := mustCreate(t, dir, testMeta(F32), rng)
	if _, err := Open(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second writer: %v", err)
	}
	if _, err := OpenReadOnly(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("reader beside a writer: %v", err)
	}
	if _, err := Create(dir, testMeta(F32), nil, testInitial(testMeta(F32), rng), nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("Create on an open dir: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	r1, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	defer r2.Close()
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer beside readers: %v", err)
	}
}

func TestEmptyDBDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(dir); !errors.Is(err, ErrNoModel) {
		t.Fatalf("OpenReadOnly on an empty db dir: %v", err)
	}
	mustCreate(t, dir, testMeta(F32), rand.New(rand.NewPCG(1, 1))).Close()
}
