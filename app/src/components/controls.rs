//! The control bar: start/stop, ping rate, time window, pause, kill, CSV export, theme.

use leptos::prelude::*;

use super::WINDOWS;
use crate::browser;
use crate::driver::Demo;
use crate::session::SessionPhase;

/// Rates offered, in pings per second.
const RATES: [f64; 5] = [0.5, 1.0, 2.0, 5.0, 10.0];

/// The control bar.
#[component]
pub fn Controls(demo: Demo, window_s: RwSignal<u32>, dark: RwSignal<bool>) -> impl IntoView {
    // Re-evaluate the kill button every half second so the cooldown ends on time.
    let tick = super::ticker(std::time::Duration::from_millis(500));
    let kill_enabled = move || {
        tick.track();
        demo.kill.get().enabled(&demo.phase.get(), browser::now())
    };
    let running = move || !matches!(demo.phase.get(), SessionPhase::Idle | SessionPhase::Ended);
    view! {
        <nav class="controls" aria-label="Demo controls">
            <span class="badge" data-phase=move || demo.phase.get().badge() id="phase">
                {move || demo.phase.get().badge()}
            </span>
            <button
                id="start"
                on:click=move |_| if running() { demo.stop() } else { demo.start() }
            >
                {move || if running() { "Stop" } else { "Start" }}
            </button>
            <button
                id="kill"
                class="danger"
                disabled=move || !kill_enabled()
                on:click=move |_| demo.kill_pod()
                title="Terminate your pod; the provisioner hands your session a replacement"
            >
                {move || if demo.kill.get().in_flight { "Killing…" } else { "Kill my pod" }}
            </button>
            <label>
                "Rate "
                <select
                    id="rate"
                    on:change=move |ev| {
                        // Options carry their index: parsing a float here would link a float parser (and its
                        // 10 KB table) into the page for five known numbers.
                        if let Some(rate) = event_target_value(&ev)
                            .parse::<usize>()
                            .ok()
                            .and_then(|index| RATES.get(index))
                        {
                            demo.rate_hz.set(*rate);
                        }
                    }
                >
                    {RATES
                        .iter()
                        .enumerate()
                        .map(|(index, rate)| {
                            view! {
                                <option value=index.to_string() selected=*rate == 1.0>
                                    {format!("{rate} Hz")}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </label>
            <label>
                "Window "
                <select
                    id="window"
                    on:change=move |ev| {
                        if let Ok(seconds) = event_target_value(&ev).parse::<u32>() {
                            window_s.set(seconds);
                        }
                    }
                >
                    {WINDOWS
                        .iter()
                        .map(|(seconds, label)| {
                            view! { <option value=seconds.to_string()>{*label}</option> }
                        })
                        .collect_view()}
                </select>
            </label>
            <button
                id="pause"
                aria-pressed=move || demo.paused.get().to_string()
                on:click=move |_| demo.paused.update(|p| *p = !*p)
            >
                {move || if demo.paused.get() { "Resume" } else { "Pause" }}
            </button>
            <button
                id="export"
                on:click=move |_| {
                    let csv = demo.history.with_untracked(|h| h.to_csv());
                    let _ = browser::download("latency.csv", &csv, "text/csv");
                }
            >
                "Export CSV"
            </button>
            <button
                id="theme"
                aria-label="Toggle dark theme"
                on:click=move |_| dark.update(|d| *d = !*d)
            >
                {move || if dark.get() { "☀ Light" } else { "☾ Dark" }}
            </button>
        </nav>
    }
}
