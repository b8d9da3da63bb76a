package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/plots"
	"github.com/spotlight-lm/spotlight/query"
)

// plotFlags are generate's --plot options: one token's timeline as PNG or SVG.
type plotFlags struct {
	file  string // --plot FILE.png|FILE.svg
	token int    // --plot-token: index of the generated token
	layer string // --plot-layer: default out (or the first layer in the answer)
}

// check validates the flags before the (slow) generation.
func (p *plotFlags) check(req query.Request) error {
	if p.file == "" {
		return nil
	}
	if _, err := p.format(); err != nil {
		return err
	}
	if p.token < 0 || p.token >= req.Tokens {
		return fmt.Errorf("--plot-token %d is not among the %d generated tokens (0..%d)", p.token, req.Tokens, req.Tokens-1)
	}
	return nil
}

func (p *plotFlags) format() (string, error) {
	switch strings.ToLower(filepath.Ext(p.file)) {
	case ".png":
		return "png", nil
	case ".svg":
		return "svg", nil
	}
	return "", fmt.Errorf("--plot %s: name a .png or .svg file", p.file)
}

// write draws the chosen token's timeline into p.file.
func (p *plotFlags) write(ans *query.Answer) error {
	if p.file == "" {
		return nil
	}
	format, err := p.format()
	if err != nil {
		return err
	}
	if p.token >= len(ans.Tokens) {
		return fmt.Errorf("--plot-token %d: only %d tokens were generated", p.token, len(ans.Tokens))
	}
	tok := ans.Tokens[p.token]
	layer := p.layer
	if layer == "" {
		layer = lm.OutLayer
		if _, ok := tok.Layers[layer]; !ok {
			if names := sortedLayers(tok.Layers); len(names) > 0 {
				layer = names[0]
			}
		}
	}
	la, ok := tok.Layers[layer]
	if !ok {
		return fmt.Errorf("--plot-layer %q is not among the answer's layers %v", layer, sortedLayers(tok.Layers))
	}
	title := fmt.Sprintf("token %d %s (p=%.3f) · layer %s · model at step %d", tok.Index, strconv.Quote(tok.Token), tok.Prob, layer, ans.Step)
	b, err := plots.Timeline(la.Timeline, title, format)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.file, b, 0o644); err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wrote the timeline of token %d %q (layer %s) to %s\n", p.token, tok.Token, layer, p.file)
	return nil
}
