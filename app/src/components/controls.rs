//! The control bar: start/stop, kill, ping rate, time window, chart view, shared series, pause, CSV export,
//! theme. It is the one component that holds the demo, for its commands.

use leptos::prelude::*;

use super::WINDOWS;
use super::chart_view::ChartKind;
use crate::browser;
use crate::driver::Demo;
use crate::session::SessionPhase;

/// Rates offered, in pings per second.
const RATES: [f64; 5] = [0.5, 1.0, 2.0, 5.0, 10.0];

/// The control bar.
#[component]
pub fn Controls(
    demo: Demo,
    window_s: RwSignal<u32>,
    kind: RwSignal<ChartKind>,
    dark: RwSignal<bool>,
    shared: RwSignal<Option<String>>,
) -> impl IntoView {
    // Re-evaluate the kill button every half second so the cooldown ends on time.
    let tick = super::ticker(std::time::Duration::from_millis(500));
    let phase = demo.phase();
    let kill_enabled = move || {
        tick.track();
        demo.kill_button().get().enabled(&phase.get(), browser::now())
    };
    let running = move || !matches!(phase.get(), SessionPhase::Idle | SessionPhase::Ended);
    let theme_label = move || if dark.get() { "Light theme" } else { "Dark theme" };
    view! {
        <nav class="controls" aria-label="Demo controls">
            <span class="badge" data-phase=move || phase.get().badge() id="phase">
                {move || phase.get().badge()}
            </span>
            <button id="start" on:click=move |_| if running() { demo.stop() } else { demo.start() }>
                {move || if running() { "Stop" } else { "Start" }}
            </button>
            <button
                id="kill"
                class="danger"
                disabled=move || !kill_enabled()
                on:click=move |_| demo.kill_pod()
                title="Terminate your pod; the provisioner hands your session a replacement"
            >
                {move || if demo.kill_button().get().in_flight { "Killing…" } else { "Kill my pod" }}
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
                            demo.set_rate(*rate);
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
                        .map(|(seconds, label)| view! { <option value=seconds.to_string()>{*label}</option> })
                        .collect_view()}
                </select>
            </label>
            <button
                id="view"
                aria-pressed=move || (kind.get() == ChartKind::Distribution).to_string()
                on:click=move |_| kind.update(|k| *k = k.other())
            >
                {move || kind.get().other().label()}
            </button>
            <label class="check" hidden=move || shared.with(Option::is_none)>
                    <input
                        type="checkbox"
                        id="shared"
                        prop:checked=move || demo.shared_on().get()
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            demo.set_shared(on.then(|| shared.get_untracked()).flatten());
                        }
                    />
                    " Compare with the shared servers"
                </label>
            <button
                id="pause"
                aria-pressed=move || demo.paused().get().to_string()
                on:click=move |_| demo.toggle_pause()
            >
                {move || if demo.paused().get() { "Resume" } else { "Pause" }}
            </button>
            <button
                id="export"
                on:click=move |_| {
                    let csv = demo.history().with_untracked(|h| h.to_csv());
                    let _ = browser::download("latency.csv", &csv, "text/csv");
                }
            >
                "Export CSV"
            </button>
            // The accessible name is the visible text: what pressing it switches to.
            <button id="theme" on:click=move |_| dark.update(|d| *d = !*d)>
                {theme_label}
            </button>
        </nav>
    }
}
