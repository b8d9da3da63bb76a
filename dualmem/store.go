package dualmem

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/spotlight-lm/spotlight/lm"
)

// More errors a caller can tell apart (see also types.go).
var (
	ErrExists   = errors.New("data directory already holds a model")
	ErrNotFound = errors.New("not found")
	ErrReadOnly = errors.New("data directory is open read-only")
	ErrClosed   = errors.New("store is closed")
	// ErrNotWritable: a read-write open of a directory that cannot be written (a read-only
	// mount, or permissions). Open it read-only instead.
	ErrNotWritable = errors.New("data directory is not writable")
)

// CreatingDir is where Create builds a store before it moves it to DIR/db: one left in a
// data directory is a Create that was killed, and the next Create removes it.
const CreatingDir = "db.creating"

// closeTimeout bounds Close: Badger retries a failing memtable flush forever (on a
// directory that stopped being writable), and the process must still exit.
const closeTimeout = 8 * time.Second

// Size keys in the map from Sizes that are not layer names; layer names cannot start with '@'.
const (
	SizeCorpus     = "@corpus"     // the corpus
	SizeTokens     = "@tokens"     // per-step records, offsets and targets
	SizeInitial    = "@initial"    // initial weights of all layers
	SizeCheckpoint = "@checkpoint" // the last checkpoint
	SizeKept       = "@kept"       // the checkpoints kept for retraining
	SizeDisk       = "@disk"       // everything under DIR on disk (all versions, logs, indexes)
)

// Store is a data directory: metadata, corpus, initial weights, the per-step memory of every
// captured layer and the last checkpoint, all in one Badger database under DIR/db.
//
// Readers (Meta, Corpus, Steps, ReadStep, LoadLayer, ...) are safe for concurrent use and
// only ever see committed steps. AppendStep, Commit and DiscardUncommitted belong to one
// writer (the trainer) and are serialised.
type Store struct {
	dir      string
	db       *badger.DB
	readOnly bool
	meta     Meta
	corpus   []byte
	layerIdx map[string]int

	faults sync.Map // layer name ("" for the token arrays) → *SegmentError found by CheckSegments
	segMu  sync.Mutex
	seg    *segments // the segment files, nil until valid ones exist (segbuild.go)

	committed atomic.Int64
	ckptBytes atomic.Int64 // size of the last checkpoint: room kept for the next commit
	keepEvery atomic.Int64 // checkpoint retention (SetKeepEvery)
	lastKept  atomic.Int64 // step of the latest kept checkpoint, -1 if none

	wmu       sync.Mutex // serialises the writer-side API
	mu        sync.Mutex // guards the fields below
	cond      *sync.Cond
	appended  int   // last step handed to the writer goroutine
	written   int   // last step the writer goroutine has stored
	pending   int64 // bytes appended but not yet stored
	werr      error
	closed    bool
	ch        chan *lm.Step
	writerEnd chan struct{}
	wbufs     [][]byte // the writer goroutine's encoding buffers, one per layer
	logs      *logSync // nil when read-only
}

// valueThreshold: values this long or longer are stored in the value log.
const valueThreshold = 64 << 10

func badgerOptions(path string, readOnly bool) badger.Options {
	return badger.DefaultOptions(path).
		WithReadOnly(readOnly).
		WithLogger(slogLogger{}).
		WithMetricsEnabled(false).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithValueThreshold(valueThreshold). // per-step blocks go to the value log, not the LSM
		WithValueLogFileSize(vlogFileSize).
		WithCompression(options.None). // float payloads do not compress
		WithBlockCacheSize(16 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2)
}

// slogLogger routes Badger's warnings and errors to slog and drops the rest, and its cache
// advice too: the cache it sizes holds table blocks, which this store's few keys per step
// fill, while the memory's vectors are read from the value log and the segment files, so a
// low hit ratio there says nothing a user could act on.
type slogLogger struct{}

func (slogLogger) Errorf(f string, a ...any) {
	slog.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (slogLogger) Warningf(f string, a ...any) {
	if strings.Contains(f, "might be too small") || strings.HasPrefix(f, "Cache life expectancy") {
		return
	}
	slog.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (slogLogger) Infof(string, ...any)  {}
func (slogLogger) Debugf(string, ...any) {}

// openDB opens DIR/db, mapping Badger's lock failure to ErrLocked. A database left by a
// killed writer cannot be opened read-only until it is replayed, which needs a read-write
// open; with repair set, openDB does that once (ErrLocked if a writer is active).
func openDB(dir string, readOnly, repair bool) (*badger.DB, error) {
	path := filepath.Join(dir, "db")
	var db *badger.DB
	// A memtable file is what a killed writer leaves: replaying it needs a read-write open,
	// and even reading it may fault on a full tmpfs, which backs the holes of a sparse file
	// with new pages. So it needs the room of a read-write open either way.
	err := canWrite(path, readOnly && !hasMemtables(path))
	if err == nil {
		err = dropEmptyMemtables(path)
	}
	if err == nil {
		db, err = badger.Open(badgerOptions(path, readOnly))
	}
	if err != nil && readOnly && repair && strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error()) {
		if err = canWrite(path, false); err == nil {
			db, err = badger.Open(badgerOptions(path, false))
		}
		if err == nil {
			if err = db.Close(); err == nil {
				db, err = badger.Open(badgerOptions(path, true))
			}
		}
	}
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, ErrDiskFull) || errors.Is(err, ErrNotWritable):
		return nil, fmt.Errorf("%s: %w", dir, err)
	case strings.Contains(err.Error(), "Cannot acquire directory lock"):
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	return nil, fmt.Errorf("%s: opening database: %w", dir, err)
}

// dropEmptyMemtables removes the zero-length memtable files a writer killed between creating
// one and sizing it leaves. They never held an entry, and Badger cannot open a database that
// has one (it sizes it as a new file and then refuses it as one).
func dropEmptyMemtables(path string) error {
	ents, _ := os.ReadDir(path)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		if fi, err := e.Info(); err != nil || fi.Size() != 0 {
			continue
		}
		slog.Warn("removing an empty memtable left by a killed run", "path", filepath.Join(path, e.Name()))
		if err := os.Remove(filepath.Join(path, e.Name())); err != nil {
			return fmt.Errorf("%w (%v)", ErrNotWritable, err)
		}
	}
	return nil
}

// canWrite checks, before a read-write open of the database at path, that the directory
// is writable and has room for what the open writes (a read-only open writes nothing).
func canWrite(path string, readOnly bool) error {
	if readOnly {
		return nil
	}
	if err := writableDir(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w (%v)", ErrNotWritable, err)
	}
	return room(path, openNeed(path))
}

// Create makes a new data directory at dir, which must be missing or empty, holding meta
// (its Format is set to FormatVersion; an empty Precision means F32), the corpus, the
// initial weights of every layer of meta and, unless nil, checkpoint as the one of step 0,
// all written in one transaction. It builds the database in DIR/db.creating and renames it to
// DIR/db once complete, so a killed Create never leaves something that looks like a model.
// A directory that already holds a model gives ErrExists, any other non-empty directory
// ErrNotSpotlight; neither is modified.
func Create(dir string, meta Meta, corpus []byte, initial map[string]lm.Initial, checkpoint []byte) (*Store, error) {
	if meta.Precision == "" {
		meta.Precision = F32
	}
	meta.Format = FormatVersion
	if err := validateMeta(meta, initial); err != nil {
		return nil, err
	}
	if err := checkCreatable(dir); err != nil {
		return nil, err
	}
	need := int64(len(corpus)+len(checkpoint)) + memTableSize + diskSlack
	for _, in := range initial {
		need += 4 * int64(len(in.W)+len(in.B))
	}
	if err := room(dir, need); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	staging := filepath.Join(dir, CreatingDir)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, err
	}
	db, err := badger.Open(badgerOptions(staging, false))
	if err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("%s: creating database: %w", dir, err)
	}
	err = db.Update(func(txn *badger.Txn) error { return writeNew(txn, meta, corpus, initial, checkpoint) })
	if err = errors.Join(err, db.Close()); err != nil {
		os.RemoveAll(staging)
		return nil, fmt.Errorf("%s: creating: %w", dir, err)
	}
	final := filepath.Join(dir, "db")
	if err := os.RemoveAll(final); err != nil { // checkCreatable found it empty
		return nil, err
	}
	if err := os.Rename(staging, final); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	s, err := open(dir, false)
	if err == nil && meta.SegmentsOnly && s.segments() == nil {
		err = errors.Join(fmt.Errorf("%s: %w, and the segment files could not be created", dir, ErrSegmentsOnly), s.Close())
		s = nil
	}
	return s, err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

func writeNew(txn *badger.Txn, meta Meta, corpus []byte, initial map[string]lm.Initial, checkpoint []byte) error {
	mj, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	es := []*badger.Entry{badger.NewEntry(keyMeta, mj)}
	cb := newBlob(len(corpus))
	copy(cb[blobHeader:], corpus)
	es = append(es, blobEntries([]byte{pCorpus}, cb)...)
	for i, l := range meta.Layers {
		in := initial[l.Name]
		b := newBlob(4 * (len(in.W) + len(in.B)))
		putF32s(b[blobHeader:], in.W)
		putF32s(b[blobHeader+4*len(in.W):], in.B)
		es = append(es, blobEntries(initialKey(i), b)...)
	}
	if checkpoint != nil {
		cb = newBlob(len(checkpoint))
		copy(cb[blobHeader:], checkpoint)
		es = append(es, blobEntries([]byte{pCheckpoint}, cb)...)
		es = append(es, blobEntries(keptKey(0), cb)...) // always kept: any retrain can start there
	}
	es = append(es, badger.NewEntry(keyMagic, magicValue)) // last, though the txn is atomic anyway
	for _, e := range es {
		if err := txn.SetEntry(e); err != nil {
			return err
		}
	}
	return nil
}

// checkCreatable accepts a missing or empty dir, or one whose database has no keys at all.
// It removes what a killed Create left in DIR/db.creating, saying so.
func checkCreatable(dir string) error {
	staging := filepath.Join(dir, CreatingDir)
	if fi, err := os.Stat(staging); err == nil && fi.IsDir() {
		slog.Warn("removing a data directory half-created by a killed run", "path", staging)
		if err := os.RemoveAll(staging); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Join(dir, "db")); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not empty: %w", dir, ErrNotSpotlight)
	}
	if emptyDir(filepath.Join(dir, "db")) && len(ents) == 1 {
		return nil
	}
	state, err := probe(dir)
	switch {
	case errors.Is(err, ErrLocked):
		return err
	case err != nil:
		return fmt.Errorf("%s is not empty: %w (%v)", dir, ErrNotSpotlight, err)
	case state == dbSpotlight:
		return fmt.Errorf("%s: %w", dir, ErrExists)
	case state == dbForeign || len(ents) > 1:
		return fmt.Errorf("%s is not empty: %w", dir, ErrNotSpotlight)
	}
	return nil
}

func emptyDir(path string) bool {
	ents, err := os.ReadDir(path)
	return err == nil && len(ents) == 0
}

type dbState int

const (
	dbEmpty dbState = iota
	dbForeign
	dbSpotlight
)

// probe opens DIR/db read-only to see what it holds, changing nothing.
func probe(dir string) (dbState, error) {
	// A writer killed while it opened the database leaves a memtable to replay: repair it,
	// or a directory that holds a model would be taken for someone else's.
	db, err := openDB(dir, true, true)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	state := dbEmpty
	err = db.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(keyMagic); err == nil {
			return item.Value(func(v []byte) error {
				if string(v) == string(magicValue) {
					state = dbSpotlight
				} else {
					state = dbForeign
				}
				return nil
			})
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		if it.Rewind(); it.Valid() {
			state = dbForeign
		}
		return nil
	})
	return state, err
}

// Open opens an existing data directory for reading and writing. It fails with ErrNoModel
// (no DIR/db, or an empty one), ErrNotSpotlight (a database that is not Spotlight's),
// ErrFormat (another FormatVersion) or ErrLocked (another Store, in this or any process,
// has it open for writing). Appending continues at Steps()+1; call DiscardUncommitted to
// drop what a killed run wrote beyond its last commit.
func Open(dir string) (*Store, error) { return open(dir, false) }

// OpenReadOnly opens an existing data directory for reading; the writer-side methods return
// ErrReadOnly. Any number of read-only Stores may share a directory, but not with a writer:
// each side gets ErrLocked while the other is open. A directory whose writer was killed is
// first replayed by a brief read-write open (Badger cannot replay read-only).
func OpenReadOnly(dir string) (*Store, error) { return open(dir, true) }

func open(dir string, readOnly bool) (*Store, error) {
	if _, err := os.Stat(filepath.Join(dir, "db")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	} else if err != nil || emptyDir(filepath.Join(dir, "db")) {
		if _, err := os.Stat(filepath.Join(dir, CreatingDir)); err == nil {
			return nil, fmt.Errorf("%s: %w: a run was killed while creating it; train without --resume starts over", dir, ErrNoModel)
		}
		return nil, fmt.Errorf("%s: %w", dir, ErrNoModel)
	}
	db, err := openDB(dir, readOnly, true)
	if err != nil {
		return nil, err
	}
	s, err := load(dir, db, readOnly)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func load(dir string, db *badger.DB, readOnly bool) (*Store, error) {
	var meta Meta
	var corpus []byte
	committed, ckpt, kept := 0, int64(0), -1
	err := db.View(func(txn *badger.Txn) error {
		if err := checkMagic(txn, dir); err != nil {
			return err
		}
		mj, err := getValue(txn, keyMeta)
		if err != nil {
			return fmt.Errorf("%s: reading metadata: %w", dir, err)
		}
		var head struct{ Format int }
		if err := json.Unmarshal(mj, &head); err != nil {
			return fmt.Errorf("%s: corrupt metadata: %w", dir, err)
		}
		if head.Format != FormatVersion && head.Format != sparseFormat-1 {
			return fmt.Errorf("%s: %w: it has format %d, this program reads formats %d and %d",
				dir, ErrFormat, head.Format, sparseFormat-1, FormatVersion)
		}
		if err := json.Unmarshal(mj, &meta); err != nil {
			return fmt.Errorf("%s: corrupt metadata: %w", dir, err)
		}
		if corpus, err = readBlob(txn, []byte{pCorpus}); err != nil {
			return fmt.Errorf("%s: reading corpus: %w", dir, err)
		}
		if committed, err = readCommitted(txn); err != nil {
			return err
		}
		ckpt = checkpointBytes(txn)
		kept, err = lastKeptStep(txn)
		return err
	})
	if err != nil {
		return nil, err
	}
	s := newStore(dir, db, readOnly, meta, corpus, committed)
	s.ckptBytes.Store(ckpt)
	s.lastKept.Store(int64(kept))
	s.initSegments()
	return s, nil
}

func checkMagic(txn *badger.Txn, dir string) error {
	v, err := getValue(txn, keyMagic)
	if err == nil && string(v) == string(magicValue) {
		return nil
	}
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	if it.Rewind(); !it.Valid() {
		return fmt.Errorf("%s: empty database: %w", dir, ErrNoModel)
	}
	return fmt.Errorf("%s: %w", dir, ErrNotSpotlight)
}

func getValue(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func readCommitted(txn *badger.Txn) (int, error) {
	v, err := getValue(txn, keyCommitted)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil || len(v) != 8 {
		return 0, fmt.Errorf("reading committed step: %v", err)
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

func newStore(dir string, db *badger.DB, readOnly bool, meta Meta, corpus []byte, committed int) *Store {
	s := &Store{dir: dir, db: db, readOnly: readOnly, meta: meta, corpus: corpus,
		layerIdx: map[string]int{}, appended: committed, written: committed}
	for i, l := range meta.Layers {
		s.layerIdx[l.Name] = i
	}
	s.committed.Store(int64(committed))
	s.keepEvery.Store(DefaultKeepEvery)
	s.lastKept.Store(-1)
	s.cond = sync.NewCond(&s.mu)
	if !readOnly {
		s.logs = newLogSync(filepath.Join(dir, "db"))
		s.ch = make(chan *lm.Step, 4)
		s.writerEnd = make(chan struct{})
		go s.writer()
	}
	return s
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Meta returns the metadata fixed at Create.
func (s *Store) Meta() Meta {
	m := s.meta
	m.Layers = append([]LayerSpec(nil), m.Layers...)
	m.Config = append([]byte(nil), m.Config...)
	return m
}

// Corpus returns the training corpus. The slice is shared: do not modify it.
func (s *Store) Corpus() []byte { return s.corpus }

// Close stops the writer goroutine after it has written what was appended (uncommitted
// steps stay invisible) and closes the database. It returns a pending write error, if any.
// It gives up after closeTimeout, with an error, when the disk no longer takes writes:
// what was committed is durable already.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	werr := s.werr
	s.mu.Unlock()
	timeout := time.After(closeTimeout)
	if !s.readOnly {
		close(s.ch)
		select {
		case <-s.writerEnd:
		case <-timeout:
			return fmt.Errorf("%s: closing: the last steps were still not written after %s", s.dir, closeTimeout)
		}
		s.mu.Lock()
		werr = s.werr
		s.mu.Unlock()
		// Best effort: reclaims old checkpoints and discarded steps, when there is room to
		// rewrite half a value-log file and the directory still takes writes.
		if werr == nil && writableDir(filepath.Join(s.dir, "db")) == nil &&
			room(s.dir, vlogFileSize/2+s.reserve()) == nil {
			_ = s.db.RunValueLogGC(0.5)
		}
	}
	if sg := s.segments(); sg != nil {
		werr = errors.Join(werr, sg.close())
	}
	if s.logs != nil {
		s.logs.close()
	}
	closed := make(chan error, 1)
	go func() { closed <- s.db.Close() }()
	select {
	case err := <-closed:
		return errors.Join(werr, err)
	case <-timeout:
		return errors.Join(werr, fmt.Errorf("%s: closing the database: gave up after %s; is the directory still writable?", s.dir, closeTimeout))
	}
}
