package lm

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
)

func TestNewTokenizer(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		vocab   []rune
		wantErr string
	}{
		{"ascii", "hello world", []rune(" dehlorw"), ""},
		{"newlines and tabs", "a\tb\nb\r\n", []rune("\t\n\rab"), ""},
		{"unicode sorted by rune", "λx→é€a😀é", []rune("axéλ€→😀"), ""},
		{"replacement char is an ordinary rune", "a\uFFFD", []rune("a\uFFFD"), ""},
		{"two runes", "ab", []rune("ab"), ""},
		{"empty", "", nil, "0 distinct characters"},
		{"one rune", "aaaa", nil, "1 distinct characters"},
		{"one non-ascii rune", "ééé", nil, "1 distinct characters"},
		{"invalid utf-8", "ab\xffc", nil, "not valid UTF-8 (first invalid byte at offset 2)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := NewTokenizer(tc.text)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Vocab(); !slices.Equal(got, tc.vocab) {
				t.Errorf("Vocab() = %q, want %q", string(got), string(tc.vocab))
			}
			if tok.Size() != len(tc.vocab) {
				t.Errorf("Size() = %d, want %d", tok.Size(), len(tc.vocab))
			}
			for i, r := range tc.vocab {
				if id, ok := tok.ID(r); !ok || id != int32(i) {
					t.Errorf("ID(%q) = %d, %v; want %d, true", r, id, ok, i)
				}
				if s := tok.DecodeOne(int32(i)); s != string(r) {
					t.Errorf("DecodeOne(%d) = %q, want %q", i, s, string(r))
				}
			}
			// The corpus round-trips through both encoders.
			ids := tok.EncodeCorpus(tc.text)
			ids2, err := tok.Encode(tc.text)
			if err != nil {
				t.Fatalf("Encode(corpus): %v", err)
			}
			if !slices.Equal(ids, ids2) {
				t.Errorf("EncodeCorpus = %v, Encode = %v", ids, ids2)
			}
			if got := tok.Decode(ids); got != tc.text {
				t.Errorf("Decode(Encode(text)) = %q, want %q", got, tc.text)
			}
		})
	}
}

func TestTokenizerVocabIsACopy(t *testing.T) {
	tok, err := NewTokenizer("abc")
	if err != nil {
		t.Fatal(err)
	}
	v := tok.Vocab()
	v[0] = 'z'
	if tok.Vocab()[0] != 'a' || tok.DecodeOne(0) != "a" {
		t.Error("modifying Vocab() changed the tokenizer")
	}
}

func TestTokenizerEncode(t *testing.T) {
	tok, err := NewTokenizer("the quick brown fox — λόγος 😀\n")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		unknown []rune // nil: no error expected
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"ascii", "the fox", nil, ""},
		{"unicode", "λόγος — 😀", nil, ""},
		{"one unknown", "the cat", []rune("a"), `character not in the vocabulary: "a"`},
		{"unknowns distinct in first-appearance order", "é€ é!€é", []rune("é€!"), `characters not in the vocabulary: "é", "€", "!"`},
		{"control char quoted", "fox\tfox", []rune("\t"), `character not in the vocabulary: "\t"`},
		{"case matters", "THE", []rune("THE"), `characters not in the vocabulary: "T", "H", "E"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := tok.Encode(tc.in)
			if tc.unknown == nil {
				if err != nil {
					t.Fatalf("Encode(%q): %v", tc.in, err)
				}
				if len(ids) != len([]rune(tc.in)) {
					t.Errorf("got %d ids for %d runes", len(ids), len([]rune(tc.in)))
				}
				if got := tok.Decode(ids); got != tc.in {
					t.Errorf("Decode(Encode(%q)) = %q", tc.in, got)
				}
				return
			}
			if ids != nil {
				t.Errorf("ids = %v with an error, want nil", ids)
			}
			var uerr *UnknownCharsError
			if !errors.As(err, &uerr) {
				t.Fatalf("err = %v (%T), want *UnknownCharsError", err, err)
			}
			if !slices.Equal(uerr.Chars, tc.unknown) {
				t.Errorf("Chars = %q, want %q", uerr.Chars, tc.unknown)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("Error() = %s, want %s", err, tc.wantErr)
			}
		})
	}

	if _, err := tok.Encode("fox\xff"); err == nil || !strings.Contains(err.Error(), "offset 3") {
		t.Errorf("Encode(invalid UTF-8) err = %v, want a UTF-8 error at offset 3", err)
	}
}

func TestTokenizerDecodeOutOfRange(t *testing.T) {
	tok, err := NewTokenizer("ab")
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Decode([]int32{0, 2, 1, -1}); got != "a\uFFFDb\uFFFD" {
		t.Errorf("Decode = %q", got)
	}
	if got := tok.DecodeOne(5); got != "\uFFFD" {
		t.Errorf("DecodeOne(5) = %q", got)
	}
	if got := tok.Decode(nil); got != "" {
		t.Errorf("Decode(nil) = %q", got)
	}
}

func TestTokenizerEncodeCorpusPanics(t *testing.T) {
	tok, err := NewTokenizer("abcé")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"abz", "ab€", "ab\xff"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("EncodeCorpus(%q) did not panic", in)
				}
			}()
			tok.EncodeCorpus(in)
		}()
	}
}

func TestTokenizerOpticks(t *testing.T) {
	text := string(corpora.Default())
	tok, err := NewTokenizer(text)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Size() != 91 {
		t.Errorf("Size() = %d, want 91", tok.Size())
	}
	ids := tok.EncodeCorpus(text)
	if len(ids) != len([]rune(text)) {
		t.Fatalf("%d ids for %d runes", len(ids), len([]rune(text)))
	}
	if tok.Decode(ids) != text {
		t.Error("corpus does not round-trip")
	}
	ids2, err := tok.Encode(text)
	if err != nil || !slices.Equal(ids, ids2) {
		t.Errorf("Encode differs from EncodeCorpus (err %v)", err)
	}
}

func TestTokenizerJSON(t *testing.T) {
	tok, err := NewTokenizer("a<b>&\"\\\n é€😀")
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Type  string   `json:"type"`
		Vocab []string `json:"vocab"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	want := []string{"\n", " ", "\"", "&", "<", ">", "\\", "a", "b", "é", "€", "😀"}
	if raw.Type != "char" || !slices.Equal(raw.Vocab, want) {
		t.Errorf("JSON = %s", data)
	}
	direct, err := tok.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(direct), `"<"`) || !strings.Contains(string(direct), `"é"`) {
		t.Errorf("MarshalJSON is not readable: %s", direct)
	}

	var back Tokenizer
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Vocab(), tok.Vocab()) {
		t.Errorf("round trip vocab = %q, want %q", string(back.Vocab()), string(tok.Vocab()))
	}
	ids, err := back.Encode("a é😀<")
	if err != nil {
		t.Fatal(err)
	}
	if ids2, _ := tok.Encode("a é😀<"); !slices.Equal(ids, ids2) {
		t.Errorf("round-tripped tokenizer encodes %v, original %v", ids, ids2)
	}

	// Embedded in a struct, as it is saved with a model.
	type saved struct {
		Tok *Tokenizer `json:"tokenizer"`
	}
	data, err = json.Marshal(saved{tok})
	if err != nil {
		t.Fatal(err)
	}
	var s saved
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if s.Tok == nil || !slices.Equal(s.Tok.Vocab(), tok.Vocab()) {
		t.Errorf("embedded round trip failed: %s", data)
	}
}

func TestTokenizerUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		wantErr string
	}{
		{"ok without type", `{"vocab":["a","b"]}`, ""},
		{"ok replacement char", `{"vocab":["a","\ufffd"]}`, ""},
		{"not an object", `["a","b"]`, "tokenizer:"},
		{"malformed", `{"vocab":["a",`, "unexpected end of JSON input"},
		{"wrong type", `{"type":"word","vocab":["a","b"]}`, `unsupported type "word"`},
		{"missing vocab", `{"type":"char"}`, "0 entries"},
		{"one entry", `{"vocab":["a"]}`, "1 entries"},
		{"empty string", `{"vocab":["a",""]}`, `entry 1 ("") is not exactly one character`},
		{"two runes", `{"vocab":["a","bc"]}`, `entry 1 ("bc") is not exactly one character`},
		{"combining sequence", `{"vocab":["a","e\u0301"]}`, "not exactly one character"},
		{"duplicate", `{"vocab":["a","b","b"]}`, `entry 2 ("b") is a duplicate`},
		{"unsorted", `{"vocab":["b","a"]}`, `not sorted: entry 1 ("a") comes after "b"`},
		{"unsorted unicode", `{"vocab":["a","é","e"]}`, "not sorted"},
		{"number", `{"vocab":["a",1]}`, "tokenizer:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := NewTokenizer("xyz")
			if err != nil {
				t.Fatal(err)
			}
			err = json.Unmarshal([]byte(tc.json), tok)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if got := string(tok.Vocab()); got != "xyz" {
				t.Errorf("failed Unmarshal changed the tokenizer: vocab %q", got)
			}
		})
	}
}

func BenchmarkTokenizerEncodeCorpus(b *testing.B) {
	text := string(corpora.Default())
	tok, err := NewTokenizer(text)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.EncodeCorpus(text)
	}
}
