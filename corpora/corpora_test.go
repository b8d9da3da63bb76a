package corpora

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

const opticksSHA256 = "d4a9ac22462b35e7821a4f2706c211093da678620a8f9997989ee7cf8d507bbd"

func TestDefault(t *testing.T) {
	d := Default()
	if len(d) != 567198 {
		t.Errorf("len(Default()) = %d, want 567198", len(d))
	}
	sum := sha256.Sum256(d)
	if got := hex.EncodeToString(sum[:]); got != opticksSHA256 {
		t.Errorf("sha256 = %s, want %s", got, opticksSHA256)
	}
	if !utf8.Valid(d) {
		t.Error("default corpus is not valid UTF-8")
	}
	if !bytes.HasPrefix(d, []byte("Produced by Suzanne Lybarger")) {
		t.Errorf("unexpected start: %q", d[:40])
	}
	// Each call returns a fresh copy.
	d[0] = 'X'
	if Default()[0] != 'P' {
		t.Error("Default() returned shared memory")
	}
	// The embedded corpus passes the same checks as a user's file.
	if detail, err := check(Default()); err != nil {
		t.Errorf("default corpus fails validation: %v (%s)", err, detail)
	}
}

func TestLoadDefault(t *testing.T) {
	for _, arg := range []string{"", DefaultName} {
		name, text, err := Load(arg)
		if err != nil {
			t.Fatalf("Load(%q): %v", arg, err)
		}
		if name != DefaultName {
			t.Errorf("Load(%q) name = %q, want %q", arg, name, DefaultName)
		}
		if !bytes.Equal(text, Default()) {
			t.Errorf("Load(%q) text differs from Default()", arg)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	bomPrefix := "\xEF\xBB\xBF"
	tests := []struct {
		name    string
		content string
		want    string // expected text when err is nil
	}{
		{"ascii", "hello world\n", "hello world\n"},
		{"crlf kept", "line one\r\nline two\r\n", "line one\r\nline two\r\n"},
		{"unicode", "Größe — 光の屈折 ✓\n", "Größe — 光の屈折 ✓\n"},
		{"bom stripped", bomPrefix + "abc\n", "abc\n"},
		{"bom only in middle kept", "a" + bomPrefix + "b", "a" + bomPrefix + "b"},
		{"tabs and form feeds", "a\tb\fc\r\n", "a\tb\fc\r\n"},
		{"no trailing newline", "x y", "x y"},
		{"few controls allowed", strings.Repeat("a", 199) + "\x1b", strings.Repeat("a", 199) + "\x1b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".txt")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			name, text, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if name != path {
				t.Errorf("name = %q, want %q", name, path)
			}
			if string(text) != tc.want {
				t.Errorf("text = %q, want %q", text, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := filepath.Join(dir, "big.txt")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxSize + 1); err != nil { // sparse: cheap
		t.Fatal(err)
	}
	f.Close()
	subdir := filepath.Join(dir, "sub")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		path     string
		sentinel error
		contains []string // substrings of the message besides the path
	}{
		{"missing", filepath.Join(dir, "nope.txt"), ErrNotFound, []string{"does not exist"}},
		{"directory", subdir, ErrIsDir, []string{"directory"}},
		{"empty", write("empty.txt", nil), ErrEmpty, []string{"empty"}},
		{"whitespace only", write("ws.txt", []byte(" \n\t\r\n  \n")), ErrEmpty, []string{"whitespace"}},
		{"bom only", write("bom.txt", []byte("\xEF\xBB\xBF\n")), ErrEmpty, nil},
		{"nul byte", write("nul.txt", []byte("abc\x00def")), ErrBinary, []string{"NUL", "offset 3"}},
		{"too many controls", write("ctl.txt", []byte(strings.Repeat("a", 98)+"\x01\x02")), ErrBinary, []string{"2 of 100 bytes"}},
		{"png header", write("img.png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")), ErrBinary, nil},
		{"latin-1", write("latin1.txt", []byte("caf\xe9 au lait")), ErrNotUTF8, []string{"byte offset 3"}},
		{"truncated sequence", write("trunc.txt", []byte("ab€cd\xe2\x82")), ErrNotUTF8, []string{"byte offset 7"}},
		{"invalid after bom", write("bominv.txt", []byte("\xEF\xBB\xBFab\xff")), ErrNotUTF8, []string{"byte offset 5"}},
		{"surrogate", write("surr.txt", []byte("ab\xed\xa0\x80")), ErrNotUTF8, []string{"byte offset 2"}},
		{"too large", big, ErrTooLarge, []string{"64 MiB"}},
		{"built-in name in another case", "Opticks", ErrNotFound, []string{`did you mean the built-in corpus "opticks"?`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name, text, err := Load(tc.path)
			if err == nil {
				t.Fatalf("Load(%q) = %q, %d bytes, nil error; want %v", tc.path, name, len(text), tc.sentinel)
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %q does not wrap %v", err, tc.sentinel)
			}
			var le *LoadError
			if !errors.As(err, &le) || le.Path != tc.path {
				t.Errorf("error %q is not a *LoadError for %q", err, tc.path)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, tc.path) {
				t.Errorf("message %q does not mention the path", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q is not one line", msg)
			}
			for _, s := range tc.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not contain %q", msg, s)
				}
			}
			if name != "" || text != nil {
				t.Errorf("got name %q and %d bytes with an error", name, len(text))
			}
		})
	}

	// A missing file is also fs.ErrNotExist.
	if _, _, err := Load(filepath.Join(dir, "nope.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestInvalidOffset(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", -1},
		{"abc", -1},
		{"é€😀", -1},
		{"\xff", 0},
		{"é\x80", 2},
		{"😀\xf0\x9f\x98", 4},
	}
	for _, tc := range tests {
		if got := invalidOffset([]byte(tc.in)); got != tc.want {
			t.Errorf("invalidOffset(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
