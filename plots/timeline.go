// Package plots draws Spotlight's charts as SVG or PNG with gonum/plot: today the timeline
// of one generated token's attention mass and logit contribution over training steps.
package plots

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/spotlight-lm/spotlight/query"
)

// Axis labels, stable so that tests and scripts can look for them.
const (
	XLabel            = "training step"
	AttentionLabel    = "attention mass Σα (dimensionless)"
	ContributionLabel = "contribution (logit units)"
)

// Size of the whole figure (both panels).
var (
	Width  = 8 * vg.Inch
	Height = 5.5 * vg.Inch
)

var (
	colAttention    = color.RGBA{R: 0x1f, G: 0x6f, B: 0xd0, A: 0xff}
	colAbsAttention = color.RGBA{R: 0x8a, G: 0xa8, B: 0xd6, A: 0xff}
	colContribution = color.RGBA{R: 0xc0, G: 0x39, B: 0x2b, A: 0xff}
	colZero         = color.Gray{Y: 0x99}
)

// Timeline draws bins as two stacked panels sharing the x axis (training step): on top the
// signed attention mass Σα and the absolute mass Σ|α| of each bin, below the summed signed
// contribution to the token's logit. Each bin is drawn as a flat segment over its steps.
// format is "svg" or "png".
func Timeline(bins []query.Bin, title string, format string) ([]byte, error) {
	if format != "svg" && format != "png" {
		return nil, fmt.Errorf("plots: unknown format %q (want svg or png)", format)
	}
	if len(bins) == 0 {
		return nil, errors.New("plots: the timeline has no bins")
	}
	for i, b := range bins {
		for _, v := range []float64{b.Attention, b.AbsAttentionOrZero(), b.Contribution} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("plots: bin %d (steps %d–%d) holds a non-finite value", i, b.FromStep, b.ToStep)
			}
		}
		if b.ToStep < b.FromStep {
			return nil, fmt.Errorf("plots: bin %d ends (step %d) before it starts (step %d)", i, b.ToStep, b.FromStep)
		}
	}
	xmin, xmax := float64(bins[0].FromStep)-0.5, float64(bins[0].ToStep)+0.5
	for _, b := range bins {
		xmin = math.Min(xmin, float64(b.FromStep)-0.5)
		xmax = math.Max(xmax, float64(b.ToStep)+0.5)
	}

	top := plot.New()
	top.Title.Text = title
	top.Y.Label.Text = AttentionLabel
	top.X.Label.Text = XLabel
	top.Legend.Top = true
	addZero(top, xmin, xmax)
	abs, err := stepLine(bins, func(b query.Bin) float64 { return b.AbsAttentionOrZero() }, colAbsAttention, true)
	if err != nil {
		return nil, err
	}
	sig, err := stepLine(bins, func(b query.Bin) float64 { return b.Attention }, colAttention, false)
	if err != nil {
		return nil, err
	}
	top.Add(abs, sig)
	top.Legend.Add("Σ|α|", abs)
	top.Legend.Add("Σα", sig)

	bot := plot.New()
	bot.Y.Label.Text = ContributionLabel
	bot.X.Label.Text = XLabel
	bot.Legend.Top = true
	addZero(bot, xmin, xmax)
	con, err := stepLine(bins, func(b query.Bin) float64 { return b.Contribution }, colContribution, false)
	if err != nil {
		return nil, err
	}
	bot.Add(con)
	bot.Legend.Add("Σ contribution", con)

	for _, p := range []*plot.Plot{top, bot} {
		p.Add(plotter.NewGrid())
		// Headroom for the legend in the top right corner.
		p.Y.Max += 0.18 * (p.Y.Max - p.Y.Min)
	}

	var c vg.CanvasWriterTo
	switch format {
	case "svg":
		c = vgsvg.NewWith(vgsvg.UseWH(Width, Height))
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(Width, Height), vgimg.UseDPI(110),
			vgimg.UseBackgroundColor(color.White))}
	}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter * 2, PadY: vg.Millimeter * 3,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{{top}, {bot}}, tiles, draw.New(c))
	top.Draw(canvases[0][0])
	bot.Draw(canvases[1][0])

	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("plots: writing %s: %w", format, err)
	}
	return buf.Bytes(), nil
}

// stepLine draws one value per bin as a flat segment over its steps. A bin covers steps
// FromStep..ToStep inclusive, so on the axis it spans FromStep−½ to ToStep+½ and meets its
// neighbours.
func stepLine(bins []query.Bin, val func(query.Bin) float64, col color.Color, dashed bool) (*plotter.Line, error) {
	pts := make(plotter.XYs, 0, 2*len(bins))
	for _, b := range bins {
		v := val(b)
		pts = append(pts, plotter.XY{X: float64(b.FromStep) - 0.5, Y: v}, plotter.XY{X: float64(b.ToStep) + 0.5, Y: v})
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	l.Color = col
	l.Width = vg.Points(1.6)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	}
	return l, nil
}

func addZero(p *plot.Plot, xmin, xmax float64) {
	z, err := plotter.NewLine(plotter.XYs{{X: xmin, Y: 0}, {X: xmax, Y: 0}})
	if err != nil {
		return
	}
	z.Color = colZero
	z.Width = vg.Points(0.8)
	p.Add(z)
}
