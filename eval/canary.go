package eval

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"unicode/utf8"
)

// Fact is one planted canary: a made-up name with a made-up code, inserted several times.
type Fact struct {
	Name, Code string
	Text       string     // the whole sentence, e.g. "Zorblat's code is 4QX7."
	CodeAt     int        // rune index of the code's first character in Text
	Spans      [][2]int64 // [start, end) corpus offsets (in runes, i.e. tokens) of each occurrence
}

// Prefix is the text before the code: the prompt that should recall it.
func (f Fact) Prefix() string { return string([]rune(f.Text)[:f.CodeAt]) }

// Overlaps reports whether corpus offsets [start, end) overlap one of the fact's occurrences.
func (f Fact) Overlaps(start, end int64) bool {
	for _, s := range f.Spans {
		if start < s[1] && end > s[0] {
			return true
		}
	}
	return false
}

// PlantCanaries inserts k unique random facts, each reps times at random word boundaries of
// base, using only characters base already has. Insertions go into the first 80% of base, so
// they land in the training split (lm.HeldOutFrac keeps the last 10% of the result).
func PlantCanaries(base string, k, reps int, seed uint64) (string, []Fact, error) {
	if k <= 0 || reps <= 0 {
		return "", nil, fmt.Errorf("canaries: need k>0 and reps>0, got %d and %d", k, reps)
	}
	if !utf8.ValidString(base) {
		return "", nil, fmt.Errorf("canaries: base corpus is not UTF-8")
	}
	have := map[rune]bool{}
	for _, r := range base {
		have[r] = true
	}
	pick := func(set string) []rune {
		var out []rune
		for _, r := range set {
			if have[r] {
				out = append(out, r)
			}
		}
		return out
	}
	upper, cons, vow := pick("BCDFGHJKLMNPRSTVWZ"), pick("bcdfghklmnprstvz"), pick("aeiou")
	codeSet := pick("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789")
	if len(upper) < 4 || len(cons) < 4 || len(vow) < 2 || len(codeSet) < 8 {
		return "", nil, fmt.Errorf("canaries: the base corpus lacks the letters and digits facts are made of")
	}
	for _, r := range " ." {
		if !have[r] {
			return "", nil, fmt.Errorf("canaries: the base corpus has no %q", r)
		}
	}
	tmpl := "%s code is %s."
	if have['\''] && have['s'] {
		tmpl = "%s's code is %s."
	}
	for _, r := range tmpl {
		if r != '%' && !have[r] {
			return "", nil, fmt.Errorf("canaries: the base corpus has no %q", r)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0xca9a7))
	facts := make([]Fact, 0, k)
	seen := map[string]bool{}
	for len(facts) < k {
		name := []rune{upper[rng.IntN(len(upper))]}
		for i := range 6 {
			if i%2 == 0 {
				name = append(name, vow[rng.IntN(len(vow))])
			} else {
				name = append(name, cons[rng.IntN(len(cons))])
			}
		}
		code := make([]rune, 4)
		for i := range code {
			code[i] = codeSet[rng.IntN(len(codeSet))]
		}
		n, c := string(name), string(code)
		if seen[n] || seen["#"+c] || strings.Contains(base, n) {
			continue
		}
		seen[n], seen["#"+c] = true, true
		text := fmt.Sprintf(tmpl, n, c)
		codeAt := utf8.RuneCountInString(text) - len(code) - 1
		facts = append(facts, Fact{Name: n, Code: c, Text: text, CodeAt: codeAt})
	}

	runes := []rune(base)
	cut := len(runes) * 8 / 10
	type ins struct{ at, fact int }
	var plan []ins
	for f := range facts {
		for range reps {
			at := rng.IntN(max(1, cut))
			for at < cut && runes[at] != ' ' { // insert right after a space
				at++
			}
			plan = append(plan, ins{min(at+1, len(runes)), f})
		}
	}
	slices.SortStableFunc(plan, func(a, b ins) int { return a.at - b.at })
	out := make([]rune, 0, len(runes)+len(plan)*32)
	prev := 0
	for _, p := range plan {
		out = append(out, runes[prev:p.at]...)
		prev = p.at
		start := int64(len(out))
		out = append(out, []rune(facts[p.fact].Text)...)
		facts[p.fact].Spans = append(facts[p.fact].Spans, [2]int64{start, int64(len(out))})
		out = append(out, ' ')
	}
	out = append(out, runes[prev:]...)
	return string(out), facts, nil
}
