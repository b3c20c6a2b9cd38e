//! The `<canvas>` the chart is drawn on: the time series (with the shared series when it is on) or the
//! window's distribution, sized for the device-pixel ratio, redrawn when samples arrive, the window or the view
//! changes, the theme flips, the page resizes, or time moves on.

use leptos::html::Canvas;
use leptos::prelude::*;
use plotters::prelude::IntoDrawingArea;

use crate::browser;
use crate::canvas::BatchedCanvas;
use crate::chart::{DARK, LIGHT, Layout, draw, draw_distribution};
use crate::samples::History;
use crate::stats::Distribution;

/// What the chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// Round trips over time.
    Series,
    /// The window's histogram and CDF.
    Distribution,
}

impl ChartKind {
    /// The other view.
    pub fn other(self) -> Self {
        match self {
            ChartKind::Series => ChartKind::Distribution,
            ChartKind::Distribution => ChartKind::Series,
        }
    }

    /// The button's text for switching to this view.
    pub fn label(self) -> &'static str {
        match self {
            ChartKind::Series => "Show over time",
            ChartKind::Distribution => "Show distribution",
        }
    }
}

/// Bins of the distribution view.
const BINS: usize = 40;

/// The chart.
#[component]
pub fn ChartView(
    history: ReadSignal<History>,
    shared: ReadSignal<History>,
    shared_on: ReadSignal<bool>,
    window_s: RwSignal<u32>,
    kind: RwSignal<ChartKind>,
    dark: RwSignal<bool>,
) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let resized = RwSignal::new(0_u32);
    let _resize = window_event_listener(leptos::ev::resize, move |_| resized.update(|r| *r += 1));
    // Let time scroll even when no sample arrives (paused, or recovering).
    let tick = super::ticker(std::time::Duration::from_millis(500));
    // Drawing happens at most once per frame, in the frame: the effect only notes that something changed, and
    // a burst of changes (a kill: marks, a closed socket, a reconnection, the first pong) costs one redraw,
    // away from the messages' handlers, which then take their receive times on an idle thread.
    let scheduled = StoredValue::new(false);
    let redraw = move || {
        scheduled.set_value(false);
        let window_ms = f64::from(window_s.get_untracked()) * 1000.0;
        let palette = if dark.get_untracked() { DARK } else { LIGHT };
        let Some(element) = canvas.get_untracked() else {
            return;
        };
        let scale = browser::device_pixel_ratio();
        let width = (f64::from(element.client_width()) * scale).round() as u32;
        let height = (f64::from(element.client_height()) * scale).round() as u32;
        if width == 0 || height == 0 {
            return;
        }
        if element.width() != width || element.height() != height {
            element.set_width(width);
            element.set_height(height);
        }
        let started = browser::now();
        let now = browser::now();
        let with_shared = shared_on.get_untracked();
        let Some(backend) = BatchedCanvas::new(element.clone()) else {
            return;
        };
        let root = backend.into_drawing_area();
        let samples = match kind.get_untracked() {
            ChartKind::Series => {
                let layout = history.with_untracked(|h| {
                    shared.with_untracked(|s| {
                        Layout::compute(h, with_shared.then_some(s), now, window_ms, width as usize)
                    })
                });
                let _ = draw(&root, &layout, &palette, scale);
                layout.points.marks()
            }
            ChartKind::Distribution => {
                let from = now - window_ms;
                let mine = history.with_untracked(|h| Distribution::of(h.since(from), BINS));
                let theirs =
                    with_shared.then(|| shared.with_untracked(|s| Distribution::of(s.since(from), BINS)));
                let _ = draw_distribution(&root, &mine, theirs.as_ref(), &palette, scale);
                mine.counts.iter().sum()
            }
        };
        browser::publish("__chartDrawMs", browser::now() - started);
        browser::publish("__chartSamples", samples as f64);
    };
    Effect::new(move |_| {
        resized.track();
        tick.track();
        window_s.track();
        dark.track();
        kind.track();
        shared_on.track();
        history.track();
        shared.track();
        canvas.track();
        if !scheduled.get_value() {
            scheduled.set_value(true);
            request_animation_frame(redraw);
        }
    });
    view! {
        <figure class="chart">
            <canvas
                id="chart"
                node_ref=canvas
                role="img"
                aria-label="Round-trip latency: over time, dots are pings, the line is the rolling median, the band spans p5 to p95, crosses are lost pings and vertical lines mark kills and recoveries; the distribution view shows a histogram and its cumulative curve. The shared servers' series is orange."
            ></canvas>
            <figcaption>
                "Dots: pings · line: rolling median · band: p5–p95 · ✕: lost · vertical lines: kills, disconnects, recoveries · orange: shared servers"
            </figcaption>
        </figure>
    }
}
