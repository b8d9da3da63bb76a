package plots

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/query"
)

func sampleBins() []query.Bin {
	var bins []query.Bin
	for i := range 10 {
		bins = append(bins, query.Bin{
			FromStep: 1 + 3*i, ToStep: 3 + 3*i,
			Attention:    float64(i) - 4.5,
			AbsAttention: new(float64(i) + 1),
			Contribution: 0.25 * float64(5-i),
		})
	}
	return bins
}

func TestTimelineSVG(t *testing.T) {
	b, err := Timeline(sampleBins(), "token 'e' · layer out", "svg")
	if err != nil {
		t.Fatal(err)
	}
	// Well-formed XML with an <svg> root.
	dec := xml.NewDecoder(bytes.NewReader(b))
	var root string
	var texts []string
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			inText = el.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(el))
			}
		case xml.EndElement:
			inText = false
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{XLabel, AttentionLabel, ContributionLabel, "token 'e' · layer out", "Σ|α|"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG text lacks %q", want)
		}
	}
	writeArtifact(t, "timeline.svg", b)
}

func TestTimelinePNG(t *testing.T) {
	b, err := Timeline(sampleBins(), "timeline", "png")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	r := img.Bounds()
	if r.Dx() < 400 || r.Dy() < 300 {
		t.Fatalf("PNG is %dx%d, too small", r.Dx(), r.Dy())
	}
	// Not blank: count non-white pixels, and look for the series colours.
	dark, red, blue := 0, 0, 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if cr < 0xf000 || cg < 0xf000 || cb < 0xf000 {
				dark++
			}
			if cr>>8 > 0xa0 && cg>>8 < 0x60 && cb>>8 < 0x60 {
				red++
			}
			if cb>>8 > 0xb0 && cr>>8 < 0x40 {
				blue++
			}
		}
	}
	if dark < 2000 || red < 50 || blue < 50 {
		t.Fatalf("PNG looks empty: %d non-white, %d red, %d blue pixels", dark, red, blue)
	}
	writeArtifact(t, "timeline.png", b)
}

func TestTimelineSingleStepBins(t *testing.T) {
	bins := []query.Bin{{FromStep: 1, ToStep: 1, Attention: 1, AbsAttention: new(1.0), Contribution: -1}}
	if _, err := Timeline(bins, "", "svg"); err != nil {
		t.Fatal(err)
	}
}

func TestTimelineErrors(t *testing.T) {
	if _, err := Timeline(sampleBins(), "", "gif"); err == nil || !strings.Contains(err.Error(), "gif") {
		t.Errorf("unknown format: err = %v", err)
	}
	if _, err := Timeline(nil, "", "svg"); err == nil {
		t.Error("no bins: want an error")
	}
	bad := sampleBins()
	bad[2].ToStep = 0
	if _, err := Timeline(bad, "", "png"); err == nil {
		t.Error("reversed bin: want an error")
	}
}

// writeArtifact keeps the chart for a person to look at when SPOTLIGHT_ARTIFACTS is set.
func writeArtifact(t *testing.T, name string, b []byte) {
	dir := os.Getenv("SPOTLIGHT_ARTIFACTS")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", p)
}
