//! The page: gzipped size of the built site, and the time to lay out and draw the chart with 3,600 samples
//! through the page's own drawing code (natively, into plotters' SVG backend).

use std::io::Write;
use std::time::Instant;

use app::benchmark::hour_of_pings;
use app::chart::{LIGHT, Layout, draw};
use plotters::prelude::*;

use crate::{Paths, Row};

/// An hour at 10 Hz: the most the page keeps.
const SAMPLES: usize = 36_000;
const REDRAWS: usize = 30;

/// Size and draw time.
pub fn run(paths: &Paths) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    if let Some(dist) = &paths.dist {
        let (mut raw, mut gzipped) = (0_u64, 0_u64);
        for entry in std::fs::read_dir(dist)? {
            let path = entry?.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if matches!(ext, "wasm" | "js" | "css") {
                let bytes = std::fs::read(&path)?;
                raw += bytes.len() as u64;
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                encoder.write_all(&bytes)?;
                gzipped += encoder.finish()?.len() as u64;
            }
        }
        rows.push(Row {
            what: "site size (wasm + js + css)".into(),
            value: format!(
                "{:.1} KB, {:.1} KB gzipped",
                raw as f64 / 1024.0,
                gzipped as f64 / 1024.0
            ),
            against: "original React + Recharts: 162 KB gzipped; target < 100 KB".into(),
        });
    }
    let (history, now) = hour_of_pings(SAMPLES);
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..REDRAWS {
        let layout = Layout::compute(&history, None, now, 3_600_000.0, 1200);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (1200, 340)).into_drawing_area();
            draw(&root, &layout, &LIGHT, 1.0).map_err(|e| anyhow::anyhow!("draw failed: {e:?}"))?;
        }
        bytes = svg.len();
    }
    let per_redraw = started.elapsed().as_secs_f64() * 1000.0 / REDRAWS as f64;
    rows.push(Row {
        what: format!("chart layout + draw, {SAMPLES} samples, native (SVG backend)"),
        value: format!("{per_redraw:.2} ms ({} KB of SVG)", bytes / 1024),
        against: "target < 4 ms per redraw; in Chromium see the e2e test's output".into(),
    });
    Ok(rows)
}
