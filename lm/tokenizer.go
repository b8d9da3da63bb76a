package lm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Tokenizer is a character-level tokenizer. Its vocabulary is the sorted set
// of distinct runes of the corpus it was built from; token ids are int32
// 0..Size()-1 in increasing rune order.
//
// Build one with NewTokenizer or UnmarshalJSON; the zero value is not usable.
// A Tokenizer is immutable once built (UnmarshalJSON aside) and safe for
// concurrent use.
type Tokenizer struct {
	vocab []rune         // sorted, distinct; id i is vocab[i]
	ascii [128]int32     // id of each ASCII rune, -1 when not in the vocabulary
	ids   map[rune]int32 // ids of the non-ASCII runes
}

// charTokenizerType is the value of the "type" field of a Tokenizer's JSON
// form.
const charTokenizerType = "char"

// UnknownCharsError is returned by Encode for text containing characters
// that are not in the vocabulary. Chars holds each distinct unknown
// character once, in order of first appearance.
type UnknownCharsError struct {
	Chars []rune
}

func (e *UnknownCharsError) Error() string {
	var b strings.Builder
	if len(e.Chars) == 1 {
		b.WriteString("character not in the vocabulary: ")
	} else {
		b.WriteString("characters not in the vocabulary: ")
	}
	for i, r := range e.Chars {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", string(r))
	}
	return b.String()
}

// NewTokenizer builds a tokenizer whose vocabulary is the set of distinct
// runes in text. text must be valid UTF-8 and contain at least 2 distinct
// runes.
func NewTokenizer(text string) (*Tokenizer, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: text is not valid UTF-8 (first invalid byte at offset %d)", tokenizerInvalidUTF8At(text))
	}
	var seenASCII [128]bool
	other := make(map[rune]struct{})
	for i := 0; i < len(text); {
		if c := text[i]; c < utf8.RuneSelf {
			seenASCII[c] = true
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		other[r] = struct{}{}
		i += size
	}
	var vocab []rune
	for c, ok := range seenASCII {
		if ok {
			vocab = append(vocab, rune(c))
		}
	}
	nASCII := len(vocab)
	for r := range other {
		vocab = append(vocab, r)
	}
	slices.Sort(vocab[nASCII:])
	if len(vocab) < 2 {
		return nil, fmt.Errorf("tokenizer: text has %d distinct characters, need at least 2", len(vocab))
	}
	return newTokenizerFromSortedVocab(vocab), nil
}

// newTokenizerFromSortedVocab builds the lookup tables; vocab must be sorted and
// distinct, and is retained.
func newTokenizerFromSortedVocab(vocab []rune) *Tokenizer {
	t := &Tokenizer{vocab: vocab, ids: make(map[rune]int32)}
	for i := range t.ascii {
		t.ascii[i] = -1
	}
	for i, r := range vocab {
		if r < utf8.RuneSelf {
			t.ascii[r] = int32(i)
		} else {
			t.ids[r] = int32(i)
		}
	}
	return t
}

// Vocab returns a copy of the vocabulary: the rune of id i is Vocab()[i].
func (t *Tokenizer) Vocab() []rune {
	return slices.Clone(t.vocab)
}

// Size returns the vocabulary size V.
func (t *Tokenizer) Size() int {
	return len(t.vocab)
}

// ID returns the id of rune r, and whether r is in the vocabulary.
func (t *Tokenizer) ID(r rune) (int32, bool) {
	if r >= 0 && r < utf8.RuneSelf {
		id := t.ascii[r]
		return id, id >= 0
	}
	id, ok := t.ids[r]
	return id, ok
}

// Encode returns the ids of the runes of s. If s contains characters that
// are not in the vocabulary, it returns a nil slice and an
// *UnknownCharsError listing them. Invalid UTF-8 in s is an error too.
func (t *Tokenizer) Encode(s string) ([]int32, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("text is not valid UTF-8 (first invalid byte at offset %d)", tokenizerInvalidUTF8At(s))
	}
	ids := make([]int32, 0, utf8.RuneCountInString(s))
	var unknown []rune
	for _, r := range s {
		id, ok := t.ID(r)
		if !ok {
			if !slices.Contains(unknown, r) {
				unknown = append(unknown, r)
			}
			continue
		}
		ids = append(ids, id)
	}
	if unknown != nil {
		return nil, &UnknownCharsError{Chars: unknown}
	}
	return ids, nil
}

// EncodeCorpus returns the ids of the runes of text, which must consist of
// vocabulary runes only: it is meant for the corpus the tokenizer was built
// from, for which it cannot fail. It panics on a rune that is not in the
// vocabulary or on invalid UTF-8, since either is a programming error; use
// Encode for any other text.
func (t *Tokenizer) EncodeCorpus(text string) []int32 {
	ids := make([]int32, utf8.RuneCountInString(text))
	n := 0
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			id := t.ascii[c]
			if id < 0 {
				panic(fmt.Sprintf("lm: EncodeCorpus: %q (byte offset %d) is not in the vocabulary", string(rune(c)), i))
			}
			ids[n] = id
			n++
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			panic(fmt.Sprintf("lm: EncodeCorpus: invalid UTF-8 at byte offset %d", i))
		}
		id, ok := t.ids[r]
		if !ok {
			panic(fmt.Sprintf("lm: EncodeCorpus: %q (byte offset %d) is not in the vocabulary", string(r), i))
		}
		ids[n] = id
		n++
		i += size
	}
	return ids
}

// Decode returns the text of ids. An id outside 0..Size()-1 decodes to
// U+FFFD, the Unicode replacement character.
func (t *Tokenizer) Decode(ids []int32) string {
	var b strings.Builder
	b.Grow(len(ids))
	for _, id := range ids {
		if id >= 0 && int(id) < len(t.vocab) {
			b.WriteRune(t.vocab[id])
		} else {
			b.WriteRune(utf8.RuneError)
		}
	}
	return b.String()
}

// DecodeOne returns the text of a single id (U+FFFD when id is out of range).
func (t *Tokenizer) DecodeOne(id int32) string {
	if id >= 0 && int(id) < len(t.vocab) {
		return string(t.vocab[id])
	}
	return string(utf8.RuneError)
}

// tokenizerJSON is the JSON form of a Tokenizer:
//
//	{"type": "char", "vocab": ["\n", " ", "!", ...]}
type tokenizerJSON struct {
	Type  string   `json:"type"`
	Vocab []string `json:"vocab"`
}

// MarshalJSON encodes the tokenizer as {"type":"char","vocab":[...]}, the
// vocabulary being an array of one-rune strings in id order.
func (t *Tokenizer) MarshalJSON() ([]byte, error) {
	v := tokenizerJSON{Type: charTokenizerType, Vocab: make([]string, len(t.vocab))}
	for i, r := range t.vocab {
		v.Vocab[i] = string(r)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "<", ">" and "&" readable
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON decodes the form written by MarshalJSON. It checks that the
// type is "char" (or absent), that every entry is exactly one rune, that the
// entries are strictly increasing (sorted, no duplicates) and that there are
// at least 2. On error t is left unchanged.
func (t *Tokenizer) UnmarshalJSON(data []byte) error {
	var v tokenizerJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}
	if v.Type != "" && v.Type != charTokenizerType {
		return fmt.Errorf("tokenizer: unsupported type %q (want %q)", v.Type, charTokenizerType)
	}
	if len(v.Vocab) < 2 {
		return fmt.Errorf("tokenizer: vocabulary has %d entries, need at least 2", len(v.Vocab))
	}
	vocab := make([]rune, len(v.Vocab))
	for i, s := range v.Vocab {
		r, size := utf8.DecodeRuneInString(s)
		if size == 0 || size != len(s) {
			return fmt.Errorf("tokenizer: vocabulary entry %d (%q) is not exactly one character", i, s)
		}
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("tokenizer: vocabulary entry %d (%q) is not valid UTF-8", i, s)
		}
		if i > 0 {
			switch prev := vocab[i-1]; {
			case r == prev:
				return fmt.Errorf("tokenizer: vocabulary entry %d (%q) is a duplicate", i, s)
			case r < prev:
				return fmt.Errorf("tokenizer: vocabulary is not sorted: entry %d (%q) comes after %q", i, s, string(prev))
			}
		}
		vocab[i] = r
	}
	*t = *newTokenizerFromSortedVocab(vocab)
	return nil
}

// tokenizerInvalidUTF8At returns the byte offset of the first invalid UTF-8
// sequence in s, or -1.
func tokenizerInvalidUTF8At(s string) int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

var (
	_ json.Marshaler   = (*Tokenizer)(nil)
	_ json.Unmarshaler = (*Tokenizer)(nil)
	_ error            = (*UnknownCharsError)(nil)
)
