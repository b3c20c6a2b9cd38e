//! The latency chart: layout (what to draw) and drawing (how), generic over the plotters backend.
//!
//! The page draws on a `<canvas>` through plotters-canvas; the tests draw the same model into an SVG string.
//! Layout is SmokePing-style: every sample as a dot, a rolling median line, a p5–p95 band around it, lost pings
//! as crosses along the top, and a labelled vertical line per event ("pod killed", "recovered in 840 ms").
//! A second series, the shared servers', is drawn in its own colour with its own median. Dense windows (an hour
//! at 10 Hz is 36,000 samples) are decimated to the plot's pixel columns, the SmokePing way: a column holding
//! more than three samples becomes one bar from its smallest to its largest sample, under the rolling median
//! line, so every extreme still shows and the redraw costs one rectangle per column instead of a dot per
//! sample.
//! [`draw_distribution`] draws the window's histogram and CDF instead of the time series.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::samples::{EventKind, History};
use crate::stats::{Distribution, percentiles};

/// Colours of one theme.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    /// Chart background.
    pub background: RGBColor,
    /// Grid and axes.
    pub grid: RGBColor,
    /// Labels.
    pub text: RGBColor,
    /// Sample dots.
    pub sample: RGBColor,
    /// Median line.
    pub median: RGBColor,
    /// p5–p95 band (drawn translucent).
    pub band: RGBColor,
    /// Lost pings.
    pub lost: RGBColor,
    /// Kill and disconnect lines.
    pub alert: RGBColor,
    /// Connection and recovery lines.
    pub good: RGBColor,
    /// The shared servers' series.
    pub shared: RGBColor,
}

/// Light theme colours.
pub const LIGHT: Palette = Palette {
    background: RGBColor(255, 255, 255),
    grid: RGBColor(226, 230, 236),
    text: RGBColor(55, 65, 81),
    sample: RGBColor(37, 99, 235),
    median: RGBColor(30, 58, 138),
    band: RGBColor(96, 165, 250),
    lost: RGBColor(220, 38, 38),
    alert: RGBColor(220, 38, 38),
    good: RGBColor(22, 163, 74),
    shared: RGBColor(217, 119, 6),
};

/// Dark theme colours.
pub const DARK: Palette = Palette {
    background: RGBColor(17, 24, 39),
    grid: RGBColor(55, 65, 81),
    text: RGBColor(209, 213, 219),
    sample: RGBColor(96, 165, 250),
    median: RGBColor(191, 219, 254),
    band: RGBColor(59, 130, 246),
    lost: RGBColor(248, 113, 113),
    alert: RGBColor(248, 113, 113),
    good: RGBColor(74, 222, 128),
    shared: RGBColor(251, 191, 36),
};

/// One bucket of the rolling band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    /// Bucket centre, seconds relative to now (negative).
    pub t: f64,
    /// 5th percentile.
    pub p5: f64,
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// One dense pixel column of a series: where it is and the spread of its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnRange {
    /// The column's left edge, seconds relative to now (negative).
    pub t: f64,
    /// Smallest RTT in the column, ms.
    pub low: f64,
    /// Largest RTT in the column, ms.
    pub high: f64,
}

/// One series as drawn: samples of sparse columns as dots, dense columns as ranges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Answered pings shown one by one: (seconds relative to now, RTT ms), in time order.
    pub dots: Vec<(f64, f64)>,
    /// Columns with more samples than a column can show, in time order.
    pub ranges: Vec<ColumnRange>,
    /// How wide a column is, in seconds (when there are ranges).
    pub column_s: f64,
}

impl Series {
    /// How many marks are drawn: one per dot and one per bar.
    pub fn marks(&self) -> usize {
        self.dots.len() + self.ranges.len()
    }
}

/// What the chart shows, computed from the history; independent of any drawing backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// Window length in seconds.
    pub window_s: f64,
    /// Top of the y axis in ms.
    pub y_max: f64,
    /// Answered pings, decimated.
    pub points: Series,
    /// Lost pings: seconds relative to now.
    pub lost: Vec<f64>,
    /// Rolling band, oldest first.
    pub band: Vec<BandPoint>,
    /// Events: (seconds relative to now, label, is it good news).
    pub events: Vec<(f64, String, bool)>,
    /// The shared servers' answered pings, decimated, when that series is shown.
    pub shared: Series,
    /// The shared series' rolling median.
    pub shared_median: Vec<(f64, f64)>,
}

impl Layout {
    /// Lays out the samples and events of the last `window_ms` before `now` (page clock), with the shared
    /// series when given, for a plot about `columns` pixels wide.
    pub fn compute(
        history: &History,
        shared: Option<&History>,
        now: f64,
        window_ms: f64,
        columns: usize,
    ) -> Self {
        let from = now - window_ms;
        let rel = |t: f64| (t - now) / 1000.0;
        let mut points = Vec::with_capacity(history.len());
        let mut lost = Vec::new();
        for sample in history.since(from) {
            match sample.rtt {
                Some(rtt) => points.push((rel(sample.sent_at), rtt)),
                None => lost.push(rel(sample.sent_at)),
            }
        }
        let window_s = window_ms / 1000.0;
        let band_points = band(&points, window_s);
        let shared: Vec<(f64, f64)> = shared
            .map(|h| {
                h.since(from)
                    .filter_map(|s| Some((rel(s.sent_at), s.rtt?)))
                    .collect()
            })
            .unwrap_or_default();
        let shared_median = band(&shared, window_s).iter().map(|b| (b.t, b.median)).collect();
        let highest = points
            .iter()
            .chain(&shared)
            .map(|(_, rtt)| *rtt)
            .fold(0.0_f64, f64::max);
        let y_max = nice_ceiling((highest * 1.15).max(1.0));
        let events = history
            .events_since(from)
            .map(|e| {
                let good = matches!(
                    e.kind,
                    EventKind::Connected { .. } | EventKind::Recovered { .. } | EventKind::Visible
                );
                (rel(e.at), e.kind.label(), good)
            })
            .collect();
        Self {
            window_s,
            y_max,
            points: decimate(points, window_s, columns),
            lost,
            band: band_points,
            events,
            shared: decimate(shared, window_s, columns),
            shared_median,
        }
    }
}

/// Splits `points` (in time order) by pixel column: a column of at most three points keeps them as dots, a
/// denser one becomes its range. Sparse data is kept as it is.
pub fn decimate(points: Vec<(f64, f64)>, window_s: f64, columns: usize) -> Series {
    let columns = columns.max(1);
    if points.len() <= columns * 3 || window_s <= 0.0 {
        return Series {
            dots: points,
            ..Series::default()
        };
    }
    let width = window_s / columns as f64;
    let mut series = Series {
        column_s: width,
        ..Series::default()
    };
    let mut start = 0;
    while start < points.len() {
        // The right edge of the first point's column: one comparison per point from here on (a search per
        // column, with a division and a `floor` per step, took as long again).
        let t = points[start].0;
        let mut column = ((t + window_s) / width).floor() + 1.0;
        let mut edge = -window_s + column * width;
        // Rounding can put `t` on the far side of the edge computed for it; the edges alone decide.
        while t >= edge {
            column += 1.0;
            edge = -window_s + column * width;
        }
        let mut end = start + 1;
        while end < points.len() && points[end].0 < edge {
            end += 1;
        }
        let column_points = &points[start..end];
        if column_points.len() <= 3 {
            series.dots.extend_from_slice(column_points);
        } else {
            let (low, high) = column_points
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), (_, rtt)| {
                    (low.min(*rtt), high.max(*rtt))
                });
            series.ranges.push(ColumnRange {
                t: edge - width,
                low,
                high,
            });
        }
        start = end;
    }
    series
}

/// Percentiles per time bucket: about five samples per bucket, between 6 and 150 buckets over the window.
fn band(points: &[(f64, f64)], window_s: f64) -> Vec<BandPoint> {
    if points.is_empty() {
        return Vec::new();
    }
    let buckets = (points.len() / 5).clamp(6, 150);
    let width = window_s / buckets as f64;
    let mut out = Vec::new();
    let mut rtts = Vec::new();
    let mut start = 0;
    for b in 0..buckets {
        let upper = -window_s + width * (b + 1) as f64;
        let end = start + points[start..].partition_point(|(t, _)| *t < upper);
        if end > start {
            rtts.clear();
            rtts.extend(points[start..end].iter().map(|(_, rtt)| *rtt));
            if let Some([p95, median, p5]) = percentiles(&mut rtts, [95.0, 50.0, 5.0]) {
                out.push(BandPoint {
                    t: upper - width / 2.0,
                    p5,
                    median,
                    p95,
                });
            }
        }
        start = end;
    }
    out
}

/// The next "round" number at or above `v` (1, 2, 5 × 10ⁿ).
fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10_f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(v)
}

/// Axis label for a time offset.
fn time_label(t: f64, window_s: f64) -> String {
    if t.abs() < 1e-9 {
        "now".to_owned()
    } else if window_s > 600.0 {
        format!("{:.0} min", t / 60.0)
    } else {
        format!("{t:.0} s")
    }
}

/// Draws `layout` on `root`. `scale` is the device-pixel ratio (text and strokes grow with it).
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    layout: &Layout,
    palette: &Palette,
    scale: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let font = |size: f64| {
        (FontFamily::SansSerif, size * scale)
            .into_font()
            .color(&palette.text)
    };
    root.fill(&palette.background)?;
    let window_s = layout.window_s.max(1.0);
    let mut chart = ChartBuilder::on(root)
        .margin(px(10.0))
        .x_label_area_size(px(26.0))
        .y_label_area_size(px(52.0))
        .build_cartesian_2d(-window_s..0.0, 0.0..layout.y_max)?;
    chart
        .configure_mesh()
        .light_line_style(palette.grid.mix(0.5))
        .bold_line_style(palette.grid)
        .axis_style(palette.grid)
        .label_style(font(11.0))
        .x_labels(7)
        .y_labels(6)
        .x_label_formatter(&|t| time_label(*t, window_s))
        .y_label_formatter(&|v| format!("{v} ms"))
        .draw()?;

    if layout.band.len() >= 2 {
        let mut outline: Vec<(f64, f64)> = layout.band.iter().map(|b| (b.t, b.p95)).collect();
        outline.extend(layout.band.iter().rev().map(|b| (b.t, b.p5)));
        chart.draw_series(std::iter::once(Polygon::new(
            outline,
            palette.band.mix(0.25).filled(),
        )))?;
    }
    let dot = px(1.5);
    // A column's bar spans its column (at least a pixel: no bar vanishes, and none is painted over by the
    // next, which kept Chromium filling three times the area) and reaches as far past its extremes as a dot
    // would past its sample: a dot's radius, here in the chart's units.
    let (plot_width, plot_height) = chart.plotting_area().dim_in_pixel();
    let pixel_s = window_s / f64::from(plot_width.max(1));
    let half_rtt = layout.y_max * f64::from(dot) / f64::from(plot_height.max(1));
    let mut draw_samples = |series: &Series, color: RGBColor| {
        let clamp = |rtt: f64| rtt.min(layout.y_max);
        let bar_s = series.column_s.max(pixel_s);
        chart.draw_series(series.ranges.iter().map(|r| {
            Rectangle::new(
                [
                    (r.t, clamp(r.high) + half_rtt),
                    (r.t + bar_s, clamp(r.low) - half_rtt),
                ],
                color.filled(),
            )
        }))?;
        chart.draw_series(
            series
                .dots
                .iter()
                .map(|&(t, rtt)| Circle::new((t, clamp(rtt)), dot, color.filled())),
        )?;
        Ok::<_, DrawingAreaErrorKind<DB::ErrorType>>(())
    };
    draw_samples(&layout.shared, palette.shared)?;
    draw_samples(&layout.points, palette.sample)?;
    // The medians go over the samples: a dense column's bar covers the whole spread.
    if layout.shared_median.len() >= 2 {
        chart.draw_series(LineSeries::new(
            layout.shared_median.iter().copied(),
            palette.shared.stroke_width(px(2.0)),
        ))?;
    }
    if layout.band.len() >= 2 {
        chart.draw_series(LineSeries::new(
            layout.band.iter().map(|b| (b.t, b.median)),
            palette.median.stroke_width(px(2.0)),
        ))?;
    }
    let top = layout.y_max * 0.96;
    chart.draw_series(
        layout
            .lost
            .iter()
            .map(|&t| Cross::new((t, top), px(4.0), palette.lost.stroke_width(px(2.0)))),
    )?;
    for (i, (t, label, good)) in layout.events.iter().enumerate() {
        let color = if *good { palette.good } else { palette.alert };
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*t, 0.0), (*t, layout.y_max)],
            color.stroke_width(px(2.0)),
        )))?;
        // Stagger labels so neighbouring events stay readable; near the right edge, write them leftwards.
        let y = layout.y_max * (0.90 - 0.08 * (i % 3) as f64);
        let leftwards = *t > -window_s * 0.3;
        let anchor = if leftwards { HPos::Right } else { HPos::Left };
        let nudge = window_s * 0.004 * if leftwards { -1.0 } else { 1.0 };
        let style = (FontFamily::SansSerif, 12.0 * scale)
            .into_font()
            .color(&color)
            .pos(Pos::new(anchor, VPos::Center));
        chart.draw_series(std::iter::once(Text::new(label.clone(), (*t + nudge, y), style)))?;
    }
    root.present()?;
    Ok(())
}

/// Draws the window's distribution on `root`: the histogram of `dedicated` as bars and its CDF as a line (0 to
/// 100 % over the plot's height), and the CDF of `shared` in its own colour when given.
pub fn draw_distribution<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    dedicated: &Distribution,
    shared: Option<&Distribution>,
    palette: &Palette,
    scale: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let font = |size: f64| {
        (FontFamily::SansSerif, size * scale)
            .into_font()
            .color(&palette.text)
    };
    root.fill(&palette.background)?;
    let x_max = nice_ceiling(
        (dedicated.bin_ms * dedicated.counts.len() as f64)
            .max(shared.map_or(0.0, |s| s.bin_ms * s.counts.len() as f64))
            .max(1.0),
    );
    let most = dedicated.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(px(10.0))
        .x_label_area_size(px(26.0))
        .y_label_area_size(px(52.0))
        .build_cartesian_2d(0.0..x_max, 0.0..most * 1.1)?;
    chart
        .configure_mesh()
        .light_line_style(palette.grid.mix(0.5))
        .bold_line_style(palette.grid)
        .axis_style(palette.grid)
        .label_style(font(11.0))
        .x_labels(7)
        .y_labels(5)
        .x_label_formatter(&|v| format!("{v} ms"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart.draw_series(dedicated.counts.iter().enumerate().map(|(i, &count)| {
        let x0 = i as f64 * dedicated.bin_ms;
        Rectangle::new(
            [(x0, 0.0), (x0 + dedicated.bin_ms, count as f64)],
            palette.sample.mix(0.6).filled(),
        )
    }))?;
    let cdf_line =
        |cdf: &[(f64, f64)]| -> Vec<(f64, f64)> { cdf.iter().map(|&(rtt, f)| (rtt, f * most)).collect() };
    chart.draw_series(LineSeries::new(
        cdf_line(&dedicated.cdf),
        palette.median.stroke_width(px(2.0)),
    ))?;
    if let Some(shared) = shared {
        chart.draw_series(LineSeries::new(
            cdf_line(&shared.cdf),
            palette.shared.stroke_width(px(2.0)),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::Sample;

    fn history(rtts: &[Option<f64>]) -> History {
        let mut h = History::default();
        for (i, rtt) in rtts.iter().enumerate() {
            h.push(Sample {
                seq: i as u64,
                sent_at: i as f64 * 1000.0,
                rtt: *rtt,
                pod: "p".into(),
            });
        }
        h
    }

    #[test]
    fn layout_keeps_the_window_and_splits_lost_pings() {
        let mut h = history(&[Some(5.0), Some(6.0), None, Some(7.0)]);
        h.mark(2500.0, EventKind::Recovered { recovery_ms: 840.0 });
        let layout = Layout::compute(&h, None, 3000.0, 2500.0, 800);
        assert_eq!(layout.points.dots, vec![(-2.0, 6.0), (0.0, 7.0)]);
        assert!(layout.points.ranges.is_empty());
        assert_eq!(layout.lost, vec![-1.0]);
        assert_eq!(
            layout.events,
            vec![(-0.5, "recovered in 840 ms".to_owned(), true)]
        );
        assert_eq!(layout.y_max, 10.0);
    }

    #[test]
    fn band_holds_percentiles_per_bucket() {
        let points: Vec<(f64, f64)> = (0..100).map(|i| (-100.0 + i as f64, (i % 10) as f64)).collect();
        let band = band(&points, 100.0);
        assert_eq!(band.len(), 20);
        for b in &band {
            assert!(b.p5 <= b.median && b.median <= b.p95, "{b:?}");
        }
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(34.0), 50.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
    }

    #[test]
    fn draws_samples_band_lost_and_events_to_svg() {
        let mut rtts: Vec<Option<f64>> = (0..60).map(|i| Some(1.0 + (i % 7) as f64 * 0.3)).collect();
        rtts[40] = None;
        let mut h = history(&rtts);
        h.mark(41_000.0, EventKind::Killed { pod: "p".into() });
        h.mark(41_840.0, EventKind::Recovered { recovery_ms: 840.0 });
        let layout = Layout::compute(&h, None, 60_000.0, 30_000.0, 800);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 300)).into_drawing_area();
            draw(&root, &layout, &LIGHT, 1.0).unwrap();
        }
        assert!(svg.contains("<circle"), "sample dots");
        assert!(svg.contains("<polygon"), "p5-p95 band");
        assert!(svg.contains("<polyline"), "median line");
        // Labels: natively plotters has no font to render text with (the browser draws it on the canvas), so
        // check what the layout asks to write; the lines themselves are in the SVG.
        let labels: Vec<&str> = layout.events.iter().map(|(_, label, _)| label.as_str()).collect();
        assert_eq!(labels, ["pod killed", "recovered in 840 ms"]);
        assert!(svg.matches("<polyline").count() >= 3, "median + two event lines");
        // 30 s window at 1 Hz: 29 answered dots drawn (one ping in the window was lost).
        assert_eq!(layout.points.dots.len() + layout.lost.len(), 30);
    }

    #[test]
    fn draws_an_empty_chart_without_error() {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (400, 200)).into_drawing_area();
            draw(
                &root,
                &Layout::compute(&History::default(), None, 0.0, 30_000.0, 400),
                &DARK,
                2.0,
            )
            .unwrap();
        }
        assert!(svg.starts_with("<svg"));
    }

    #[test]
    fn two_series_are_drawn_each_in_its_colour() {
        let dedicated = history(&(0..60).map(|i| Some(1.0 + (i % 3) as f64)).collect::<Vec<_>>());
        let shared = history(&(0..60).map(|i| Some(4.0 + (i % 5) as f64)).collect::<Vec<_>>());
        let layout = Layout::compute(&dedicated, Some(&shared), 60_000.0, 30_000.0, 800);
        assert_eq!(layout.shared.dots.len(), 30);
        assert!(layout.shared_median.len() >= 2);
        assert!(layout.y_max >= 8.0, "the axis fits both series");
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (800, 300)).into_drawing_area();
            draw(&root, &layout, &LIGHT, 1.0).unwrap();
        }
        let colour = |c: RGBColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        for series in [LIGHT.sample, LIGHT.shared] {
            assert!(svg.contains(&colour(series)), "{} in the SVG", colour(series));
        }
    }

    #[test]
    fn dense_windows_keep_every_columns_extremes() {
        // An hour at 10 Hz, one spike: 36,000 points become one range per column, the spike kept.
        let mut points: Vec<(f64, f64)> = (0..36_000)
            .map(|i| (-3600.0 + f64::from(i) / 10.0, 1.0 + f64::from(i % 3)))
            .collect();
        points[20_000].1 = 250.0;
        let decimated = decimate(points.clone(), 3600.0, 1000);
        assert!(decimated.dots.is_empty());
        assert_eq!(decimated.ranges.len(), 1000);
        assert!(
            decimated.ranges.iter().any(|r| r.high == 250.0),
            "the spike survives"
        );
        assert!(
            decimated.ranges.iter().all(|r| r.low == 1.0 && r.high >= 3.0),
            "each column's smallest and largest"
        );
        assert!(
            decimated.ranges.windows(2).all(|w| w[0].t < w[1].t),
            "still in time order"
        );
        // Drawn, a dense window is one bar per column, not a dot per sample.
        let mut history = History::default();
        for (i, (t, rtt)) in points.iter().enumerate() {
            history.push(Sample {
                seq: i as u64,
                sent_at: (t + 3600.0) * 1000.0,
                rtt: Some(*rtt),
                pod: "p".into(),
            });
        }
        let layout = Layout::compute(&history, None, 3_600_000.0, 3_600_000.0, 1000);
        assert_eq!(layout.points.marks(), 1000);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (1000, 300)).into_drawing_area();
            draw(&root, &layout, &LIGHT, 1.0).unwrap();
        }
        assert!(svg.matches("<rect").count() >= 1000, "a bar per column");
        assert_eq!(svg.matches("<circle").count(), 0, "no dots");
        let sparse: Vec<(f64, f64)> = (0..10).map(|i| (-f64::from(i), 1.0)).rev().collect();
        assert_eq!(decimate(sparse.clone(), 30.0, 800).dots, sparse);
    }

    #[test]
    fn the_distribution_is_drawn_as_bars_and_a_cdf() {
        let h = history(
            &(0..200)
                .map(|i| Some(1.0 + (i % 20) as f64 * 0.1))
                .collect::<Vec<_>>(),
        );
        let dist = crate::stats::Distribution::of(h.samples(), 20);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (600, 300)).into_drawing_area();
            draw_distribution(&root, &dist, Some(&dist), &DARK, 1.0).unwrap();
        }
        assert!(svg.matches("<rect").count() >= 20, "one bar per bin");
        assert!(svg.matches("<polyline").count() >= 2, "two CDFs");
    }
}
