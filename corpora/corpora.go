// Package corpora provides Spotlight's embedded default training corpus and
// loads and validates user-supplied text corpora.
//
// # The default corpus
//
// The default corpus, named "opticks" (DefaultName), is Isaac Newton's
// "Opticks: or, a Treatise of the Reflections, Refractions, Inflections and
// Colours of Light" (4th edition, London, 1730), in the Project Gutenberg
// transcription produced by Suzanne Lybarger, steve harris, Josephine Paolucci
// and the Online Distributed Proofreading Team (http://www.pgdp.net). The
// work is in the public domain. The file opticks.txt is a byte-exact copy of
// src/testdata/Isaac.Newton-Opticks.txt from the Go distribution (go1.26.8;
// 567198 bytes, SHA-256
// d4a9ac22462b35e7821a4f2706c211093da678620a8f9997989ee7cf8d507bbd).
// It is UTF-8, LF line endings, 91 distinct characters.
//
// # User corpora
//
// Load reads a user's UTF-8 text file and rejects files that are missing,
// directories, empty (or only whitespace), binary, not valid UTF-8, or larger
// than MaxSize. Every such error is a one-line *LoadError that names the path
// and wraps one of the sentinel errors below, so callers can test it with
// errors.Is. The text is returned byte-exact (CRLF line endings are kept,
// since offsets into the text are shown to users); only a leading UTF-8 byte
// order mark is removed.
package corpora

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"
)

// DefaultName is the name of the embedded default corpus.
const DefaultName = "opticks"

// MaxSize is the largest corpus file Load accepts, in bytes (64 MiB).
const MaxSize = 64 << 20

// MaxControlFraction is the largest fraction of control bytes (C0 controls
// other than \n, \r, \t and \f, and DEL) that a text file may contain before
// Load considers it binary. Any NUL byte makes a file binary.
const MaxControlFraction = 0.01

//go:embed opticks.txt
var opticks string

// Sentinel errors wrapped by the errors Load returns.
var (
	ErrNotFound = errors.New("file does not exist")
	ErrIsDir    = errors.New("is a directory, not a text file")
	ErrEmpty    = errors.New("file is empty or contains only whitespace")
	ErrBinary   = errors.New("file looks binary, not text")
	ErrNotUTF8  = errors.New("file is not valid UTF-8")
	ErrTooLarge = errors.New("file is too large")
)

// LoadError is the error Load returns for a corpus file it cannot use.
// Err is one of the sentinel errors of this package when the file was
// rejected, or the underlying I/O error otherwise.
type LoadError struct {
	Path   string // the path as given to Load
	Err    error  // sentinel (ErrEmpty, ErrBinary, ...) or I/O error
	Detail string // extra detail, e.g. the offset of an invalid byte; may be empty
	cause  error  // underlying error, e.g. from os.Stat; may be nil
}

func (e *LoadError) Error() string {
	s := fmt.Sprintf("corpus %q: %v", e.Path, e.Err)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap returns the sentinel error and, when there is one, the underlying
// error (so errors.Is(err, fs.ErrNotExist) also works for a missing file).
func (e *LoadError) Unwrap() []error {
	if e.cause != nil && e.cause != e.Err {
		return []error{e.Err, e.cause}
	}
	return []error{e.Err}
}

// Default returns the embedded default corpus (see the package
// documentation). Each call returns a fresh copy that the caller may modify.
func Default() []byte {
	return []byte(opticks)
}

// Load returns a corpus and its name. The name DefaultName ("opticks") or the
// empty string gives the embedded default corpus, with name DefaultName.
// Anything else is the path of a UTF-8 text file, whose name is the path as
// given (to load a file called "opticks" in the working directory, pass
// "./opticks"). A missing file whose name differs from DefaultName only in case
// ("Opticks") gets an error that suggests the built-in name. The file's text is returned byte-exact, except that a leading
// UTF-8 byte order mark is removed.
//
// A file is rejected with a *LoadError wrapping ErrNotFound, ErrIsDir,
// ErrTooLarge (more than MaxSize bytes), ErrEmpty (nothing but whitespace),
// ErrBinary (a NUL byte, or more than MaxControlFraction control bytes) or
// ErrNotUTF8 (the error gives the byte offset in the file of the first invalid
// sequence). Other I/O errors are wrapped in a *LoadError too.
func Load(nameOrPath string) (name string, text []byte, err error) {
	if nameOrPath == "" || nameOrPath == DefaultName {
		return DefaultName, Default(), nil
	}
	text, err = readFile(nameOrPath)
	var le *LoadError
	if errors.As(err, &le) && le.Err == ErrNotFound && strings.EqualFold(nameOrPath, DefaultName) {
		le.Detail = fmt.Sprintf("did you mean the built-in corpus %q?", DefaultName)
	}
	if err != nil {
		return "", nil, err
	}
	return nameOrPath, text, nil
}

func readFile(path string) ([]byte, error) {
	fail := func(sentinel error, cause error, detail string) error {
		return &LoadError{Path: path, Err: sentinel, Detail: detail, cause: cause}
	}
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fail(ErrNotFound, err, "")
		}
		return nil, fail(unwrapPathError(err), err, "")
	}
	if fi.IsDir() {
		return nil, fail(ErrIsDir, nil, "")
	}
	if fi.Mode().IsRegular() && fi.Size() > MaxSize {
		return nil, fail(ErrTooLarge, nil, sizeDetail(fi.Size()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(unwrapPathError(err), err, "")
	}
	defer f.Close()
	// Read at most MaxSize+1 bytes: the file may have grown since Stat, or
	// not be a regular file at all (a pipe, /dev/stdin).
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fail(unwrapPathError(err), err, "")
	}
	if len(data) > MaxSize {
		return nil, fail(ErrTooLarge, nil, sizeDetail(-1))
	}
	if detail, sentinel := check(data); sentinel != nil {
		return nil, fail(sentinel, nil, detail)
	}
	return bytes.TrimPrefix(data, bom), nil
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// check validates the raw file contents (including any BOM). It returns a
// nil error, or a detail string and the sentinel error.
func check(data []byte) (string, error) {
	text := bytes.TrimPrefix(data, bom)
	if len(bytes.TrimSpace(text)) == 0 {
		if len(data) == 0 {
			return "0 bytes", ErrEmpty
		}
		return "", ErrEmpty
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return fmt.Sprintf("NUL byte at byte offset %d", i), ErrBinary
	}
	controls := 0
	for _, b := range data {
		if (b < 0x20 && b != '\n' && b != '\r' && b != '\t' && b != '\f') || b == 0x7F {
			controls++
		}
	}
	if float64(controls) > MaxControlFraction*float64(len(data)) {
		return fmt.Sprintf("%d of %d bytes are control characters", controls, len(data)), ErrBinary
	}
	if !utf8.Valid(data) {
		return fmt.Sprintf("first invalid byte sequence at byte offset %d", invalidOffset(data)), ErrNotUTF8
	}
	return "", nil
}

// invalidOffset returns the byte offset of the first invalid UTF-8 sequence
// in data, or -1 if data is valid.
func invalidOffset(data []byte) int {
	for i := 0; i < len(data); {
		if data[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

func sizeDetail(size int64) string {
	if size < 0 {
		return fmt.Sprintf("more than the limit of %d MiB", MaxSize>>20)
	}
	return fmt.Sprintf("%d bytes, limit %d MiB", size, MaxSize>>20)
}

// unwrapPathError strips the *fs.PathError around an I/O error, whose message
// would repeat the path that LoadError already shows.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot %s: %w", pe.Op, pe.Err)
	}
	return err
}
