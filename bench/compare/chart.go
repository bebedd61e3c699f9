package main

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	tetherColor   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	baselineColor = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
)

// logPanel is a grouped bar chart of tether and baseline per case on a log
// axis. Bars are drawn as log10 of the value above floor (a 0 shows as an
// empty bar), with ticks labelled in the value's unit.
func logPanel(title string, names []string, tether, baseline []float64, floor float64, tickValues []float64, label func(float64) string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	lg := func(vs []float64) plotter.Values {
		out := make(plotter.Values, len(vs))
		for i, v := range vs {
			out[i] = math.Log10(math.Max(v, floor)) - math.Log10(floor)
		}
		return out
	}
	w := vg.Points(22)
	bt, err := plotter.NewBarChart(lg(tether), w)
	if err != nil {
		return nil, err
	}
	bt.Color, bt.LineStyle.Width, bt.Offset = tetherColor, 0, -w/2
	bb, err := plotter.NewBarChart(lg(baseline), w)
	if err != nil {
		return nil, err
	}
	bb.Color, bb.LineStyle.Width, bb.Offset = baselineColor, 0, w/2
	p.Add(bt, bb, plotter.NewGrid())
	p.Legend.Add("tether", bt)
	p.Legend.Add("baseline (rclone + git bundle)", bb)
	p.Legend.Top = true
	p.NominalX(names...)
	top := 0.0
	for _, v := range append(lg(tether), lg(baseline)...) {
		top = math.Max(top, v)
	}
	p.Y.Min, p.Y.Max = 0, math.Ceil(top)+1.5
	var ticks []plot.Tick
	for _, v := range tickValues {
		if e := math.Log10(v) - math.Log10(floor); e >= 0 && e <= p.Y.Max {
			ticks = append(ticks, plot.Tick{Value: e, Label: label(v)})
		}
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	return p, nil
}

func writeChart(r *results, path string) error {
	var names []string
	var tb, bb, tc, bc []float64
	for _, k := range r.cases {
		names = append(names, fmt.Sprintf("(%s) %s", k.Key, k.Short))
		tb, bb = append(tb, float64(k.Tether.uploaded())), append(bb, float64(k.Baseline.uploaded()))
		tc, bc = append(tc, k.Tether.cpu().Seconds()), append(bc, k.Baseline.cpu().Seconds())
	}
	bytesPanel, err := logPanel("bytes uploaded per cycle (log scale, median)", names, tb, bb, 1, []float64{1, 32, 1 << 10, 32 << 10, 1 << 20, 32 << 20, 1 << 30, 32 << 30}, byteTick)
	if err != nil {
		return err
	}
	cpuPanel, err := logPanel("CPU seconds per cycle (log scale, median)", names, tc, bc, 0.001, []float64{0.001, 0.01, 0.1, 1, 10, 100}, func(v float64) string {
		if v < 1 {
			return fmt.Sprintf("%g ms", math.Round(v*1000))
		}
		return fmt.Sprintf("%g s", v)
	})
	if err != nil {
		return err
	}
	const wd, ht = 12 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(wd, ht)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 6, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{bytesPanel, cpuPanel}}
	canvases := plot.Align(plots, tiles, dc)
	for j, p := range plots[0] {
		p.Draw(canvases[0][j])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func byteTick(v float64) string {
	for _, u := range []struct {
		n    float64
		unit string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if v >= u.n {
			return fmt.Sprintf("%g %s", v/u.n, u.unit)
		}
	}
	return fmt.Sprintf("%g B", v)
}
