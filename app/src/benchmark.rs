//! The chart's benchmark workload: an hour of pings, as many as asked for (36,000 is an hour at 10 Hz, the most
//! the history keeps), drawn by the page's own code. The native benchmark (`cargo xtask bench page`) draws it
//! into plotters' SVG backend; the browser test calls [`bench_chart_draw`] and [`bench_stats`] (exported to
//! JavaScript) to time the same layout, drawing and statistics on a real canvas.

use crate::samples::{History, Sample};

/// The window of the benchmark: an hour, in ms.
pub const HOUR_MS: f64 = 3_600_000.0;

/// `samples` pings spread evenly over an hour (RTTs between 1 and 3 ms, every 97th lost), and the page-clock
/// time just after the last one.
pub fn hour_of_pings(samples: usize) -> (History, f64) {
    let mut history = History::default();
    let spacing = HOUR_MS / samples.max(1) as f64;
    for i in 0..samples {
        let wobble = ((i * 7919) % 100) as f64 / 50.0;
        history.push(Sample {
            seq: i as u64,
            sent_at: i as f64 * spacing,
            rtt: (i % 97 != 0).then_some(1.0 + wobble),
            pod: "session-bench".into(),
        });
    }
    (history, HOUR_MS)
}

/// Computes the statistics of [`hour_of_pings`]`(samples)` over the hour `repeats` times and returns the median
/// milliseconds per computation.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn bench_stats(samples: u32, repeats: u32) -> f64 {
    let (history, now) = hour_of_pings(samples as usize);
    let mut times = Vec::new();
    for _ in 0..repeats.max(1) {
        let started = crate::browser::now();
        let stats = crate::stats::Stats::of(history.since(now - HOUR_MS));
        std::hint::black_box(stats);
        times.push(crate::browser::now() - started);
    }
    crate::stats::percentile(&mut times, 50.0).unwrap_or(-1.0)
}

/// Lays out and draws [`hour_of_pings`]`(samples)` over a one-hour window `redraws` times on a detached canvas
/// the size of the page's chart (device pixels) and returns the median milliseconds per redraw, measured with
/// `performance.now()` (the page keeps pinging meanwhile, hence the median); a negative value when there is no
/// document to draw in. The layout's own median is published as `window.__benchLayoutMs`.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn bench_chart_draw(samples: u32, redraws: u32) -> f64 {
    use plotters::prelude::IntoDrawingArea;
    use wasm_bindgen::JsCast;

    use crate::browser;
    use crate::chart::{LIGHT, Layout, draw};

    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return -1.0;
    };
    let Some(canvas) = document
        .create_element("canvas")
        .ok()
        .and_then(|e| e.dyn_into::<web_sys::HtmlCanvasElement>().ok())
    else {
        return -1.0;
    };
    let scale = browser::device_pixel_ratio();
    let (width, height) = document
        .get_element_by_id("chart")
        .map_or((1200, 340), |chart| (chart.client_width(), chart.client_height()));
    canvas.set_width((f64::from(width.max(1)) * scale).round() as u32);
    canvas.set_height((f64::from(height.max(1)) * scale).round() as u32);
    let (history, now) = hour_of_pings(samples as usize);
    let mut times = Vec::new();
    let mut layouts = Vec::new();
    for _ in 0..redraws.max(1) {
        let started = browser::now();
        let layout = Layout::compute(&history, None, now, HOUR_MS, canvas.width() as usize);
        layouts.push(browser::now() - started);
        let Some(backend) = crate::canvas::BatchedCanvas::new(canvas.clone()) else {
            return -1.0;
        };
        if draw(&backend.into_drawing_area(), &layout, &LIGHT, scale).is_err() {
            return -1.0;
        }
        times.push(browser::now() - started);
    }
    // The layout's share, for the test to print beside the whole.
    browser::publish(
        "__benchLayoutMs",
        crate::stats::percentile(&mut layouts, 50.0).unwrap_or(-1.0),
    );
    crate::stats::percentile(&mut times, 50.0).unwrap_or(-1.0)
}
