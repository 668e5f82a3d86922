package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var colors = []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}}

// writePlots draws what the results hold into dir as PNG files.
func writePlots(dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if res.Catchup != nil {
		for _, profile := range []string{"small", "standard", "large"} {
			series := map[string]plotter.XYs{}
			for _, r := range res.Catchup.Rows {
				if r.Profile != profile {
					continue
				}
				series["engine"] = append(series["engine"], plotter.XY{X: float64(r.RTTms), Y: r.EngineBPS})
				series["naive loop"] = append(series["naive loop"], plotter.XY{X: float64(r.RTTms), Y: r.NaiveBPS})
				series["apply-only limit"] = append(series["apply-only limit"], plotter.XY{X: float64(r.RTTms), Y: r.LimitBPS})
			}
			if len(series["engine"]) == 0 {
				continue
			}
			p := plot.New()
			p.Title.Text = fmt.Sprintf("catch-up, %s blocks", profile)
			p.X.Label.Text = "round-trip time (ms)"
			p.Y.Label.Text = "blocks/s"
			for i, name := range []string{"engine", "naive loop", "apply-only limit"} {
				l, err := plotter.NewLine(series[name])
				if err != nil {
					return err
				}
				l.Color = colors[i]
				l.Width = vg.Points(2)
				p.Add(l)
				p.Legend.Add(name, l)
			}
			p.Legend.Top = true
			p.Y.Min = 0
			if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, "catchup-"+profile+".png")); err != nil {
				return err
			}
		}
	}
	if res.Lag != nil {
		for _, row := range res.Lag.Rows {
			p := plot.New()
			p.Title.Text = fmt.Sprintf("primary commit to follower commit, RTT %d ms", row.RTTms)
			p.X.Label.Text = "block"
			p.Y.Label.Text = "ms"
			for i, s := range []struct {
				name string
				ys   []float64
			}{{"engine (held)", row.engineSeries}, {"engine polling", row.pollingSeries}, {"naive loop", row.naiveSeries}} {
				xys := make(plotter.XYs, len(s.ys))
				for k, y := range s.ys {
					xys[k] = plotter.XY{X: float64(k), Y: y}
				}
				l, err := plotter.NewLine(xys)
				if err != nil {
					return err
				}
				l.Color = colors[i]
				p.Add(l)
				p.Legend.Add(s.name, l)
			}
			if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, fmt.Sprintf("lag-rtt%d.png", row.RTTms))); err != nil {
				return err
			}
		}
	}
	if res.Proofs != nil && len(res.Proofs.Rows) > 0 {
		p := plot.New()
		p.Title.Text = "bytes fetched per committed block, by proof delay"
		p.Y.Label.Text = "KB per block"
		var names []string
		for i, who := range []string{"unique block bytes", "engine", "naive loop"} {
			var vals plotter.Values
			for _, r := range res.Proofs.Rows {
				n := max(float64(r.Blocks), 1)
				vals = append(vals, []float64{float64(r.UniqueBytes), float64(r.EngineBytes), float64(r.NaiveBytes)}[i]/n/1e3)
				if i == 0 {
					names = append(names, fmt.Sprintf("proofs %d ms behind", r.ProveDelayMs))
				}
			}
			b, err := plotter.NewBarChart(vals, vg.Points(25))
			if err != nil {
				return err
			}
			b.Color = colors[i]
			b.Offset = vg.Points(float64(i-1) * 25)
			p.Add(b)
			p.Legend.Add(who, b)
		}
		p.Legend.Top = true
		p.NominalX(names...)
		if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, "proof-bytes.png")); err != nil {
			return err
		}
	}
	if res.Memory != nil && len(res.Memory.Rows) > 0 {
		p := plot.New()
		p.Title.Text = "follower peak RSS catching up large blocks"
		p.X.Label.Text = "window (MB)"
		p.Y.Label.Text = "MB"
		var rss, win plotter.XYs
		for _, r := range res.Memory.Rows {
			rss = append(rss, plotter.XY{X: r.WindowMB, Y: r.PeakRSSMB})
			win = append(win, plotter.XY{X: r.WindowMB, Y: r.WindowMB})
		}
		for i, s := range []struct {
			name string
			xys  plotter.XYs
		}{{"peak RSS", rss}, {"window", win}} {
			l, err := plotter.NewLine(s.xys)
			if err != nil {
				return err
			}
			l.Color = colors[i]
			l.Width = vg.Points(2)
			p.Add(l)
			p.Legend.Add(s.name, l)
		}
		p.Legend.Top = true
		p.Legend.Left = true
		p.Y.Min = 0
		if err := p.Save(6*vg.Inch, 4*vg.Inch, filepath.Join(dir, "memory.png")); err != nil {
			return err
		}
	}
	return nil
}
