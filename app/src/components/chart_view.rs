//! The `<canvas>` the chart is drawn on: sized for the device-pixel ratio, redrawn when samples arrive, the
//! window changes, the theme flips, the page resizes, or time moves on.

use leptos::html::Canvas;
use leptos::prelude::*;
use plotters::prelude::IntoDrawingArea;

use crate::browser;
use crate::canvas::BatchedCanvas;
use crate::chart::{DARK, LIGHT, Layout, draw};
use crate::driver::Demo;

/// The latency chart.
#[component]
pub fn ChartView(demo: Demo, window_s: RwSignal<u32>, dark: RwSignal<bool>) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let resized = RwSignal::new(0_u32);
    let _resize = window_event_listener(leptos::ev::resize, move |_| resized.update(|r| *r += 1));
    // Let time scroll even when no sample arrives (paused, or recovering).
    let tick = super::ticker(std::time::Duration::from_millis(500));
    Effect::new(move |_| {
        resized.track();
        tick.track();
        let window_ms = f64::from(window_s.get()) * 1000.0;
        let palette = if dark.get() { DARK } else { LIGHT };
        let Some(element) = canvas.get() else {
            return;
        };
        let started = browser::now();
        let layout = demo
            .history
            .with(|h| Layout::compute(h, browser::now(), window_ms));
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
        if let Some(backend) = BatchedCanvas::new(element.clone()) {
            let _ = draw(&backend.into_drawing_area(), &layout, &palette, scale);
        }
        let elapsed = browser::now() - started;
        browser::publish("__chartDrawMs", elapsed);
        browser::publish("__chartSamples", layout.points.len() as f64);
    });
    view! {
        <figure class="chart">
            <canvas
                id="chart"
                node_ref=canvas
                role="img"
                aria-label="Round-trip latency over time: dots are pings, the line is the rolling median, the band spans p5 to p95, crosses are lost pings, vertical lines mark kills and recoveries"
            ></canvas>
            <figcaption>
                "Dots: pings · line: rolling median · band: p5–p95 · ✕: lost · vertical lines: kills, disconnects, recoveries"
            </figcaption>
        </figure>
    }
}
