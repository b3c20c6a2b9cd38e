//! The information panels: the session's pod, and the statistics of the visible window (the session's pod, and
//! the shared servers beside it when that series is on).

use common::api::{ProvisionSource, SessionPod};
use leptos::prelude::*;

use crate::browser;
use crate::samples::History;
use crate::stats::{Stats, format_ms};

/// Who answers: the pod's friendly name, real name, node, and how it was provisioned.
#[component]
pub fn PodPanel(
    pod: ReadSignal<Option<SessionPod>>,
    provisioned: ReadSignal<Option<(ProvisionSource, f64)>>,
) -> impl IntoView {
    let field = move |f: fn(&SessionPod) -> Option<String>| {
        move || pod.get().as_ref().and_then(f).unwrap_or_else(|| "–".to_owned())
    };
    view! {
        <section class="card" aria-labelledby="pod-title">
            <h2 id="pod-title">"Your pod"</h2>
            <p class="display-name" id="pod-display">{field(|p| Some(p.display_name.clone()))}</p>
            <dl>
                <dt>"Name"</dt>
                <dd id="pod-name">{field(|p| Some(p.name.to_string()))}</dd>
                <dt>"Node"</dt>
                <dd>{field(|p| p.node.clone())}</dd>
                <dt>"Provisioned"</dt>
                <dd id="provisioned">
                    {move || match provisioned.get() {
                        Some((ProvisionSource::Warm, ms)) => format!("warm, in {}", format_ms(Some(ms))),
                        Some((ProvisionSource::Cold, ms)) => format!("cold start, in {}", format_ms(Some(ms))),
                        None => "–".to_owned(),
                    }}
                </dd>
            </dl>
        </section>
    }
}

/// Statistics over the visible window.
#[component]
pub fn StatsPanel(
    history: ReadSignal<History>,
    shared: ReadSignal<History>,
    shared_on: ReadSignal<bool>,
    window_s: RwSignal<u32>,
) -> impl IntoView {
    let of = move |h: ReadSignal<History>| {
        Memo::new(move |_| {
            let from = browser::now() - f64::from(window_s.get()) * 1000.0;
            h.with(|h| Stats::of(h.since(from)))
        })
    };
    let (mine, theirs) = (of(history), of(shared));
    let row = move |label: &'static str, id: &'static str, f: fn(&Stats) -> Option<f64>| {
        view! {
            <tr>
                <th scope="row">{label}</th>
                <td id=id>{move || format_ms(f(&mine.get()))}</td>
                <td hidden=move || !shared_on.get() id=format!("shared-{id}")>{move || format_ms(f(&theirs.get()))}</td>
            </tr>
        }
    };
    view! {
        <section class="card stats" aria-labelledby="stats-title">
            <h2 id="stats-title">"Round trip, visible window"</h2>
            <table>
                <thead>
                    <tr>
                        <th></th>
                        <th scope="col">"your pod"</th>
                        <th hidden=move || !shared_on.get() scope="col" class="shared">"shared servers"</th>
                    </tr>
                </thead>
                <tbody>
                    {row("Last", "stat-last", |s| s.last)}
                    {row("Min", "stat-min", |s| s.min)}
                    {row("Median", "stat-median", |s| s.median)}
                    {row("Mean", "stat-mean", |s| s.mean)}
                    {row("p95", "stat-p95", |s| s.p95)}
                    {row("p99", "stat-p99", |s| s.p99)}
                    {row("Max", "stat-max", |s| s.max)}
                    {row("Jitter", "stat-jitter", |s| s.jitter)}
                    {row("Std dev", "stat-std", |s| s.std_dev)}
                    <tr>
                        <th scope="row">"Loss"</th>
                        <td id="stat-loss">{move || format!("{:.1} %", mine.get().loss_pct)}</td>
                        <td hidden=move || !shared_on.get()>{move || format!("{:.1} %", theirs.get().loss_pct)}</td>
                    </tr>
                    <tr>
                        <th scope="row">"Sent / received"</th>
                        <td id="stat-counts" data-received=move || mine.get().received.to_string()>
                            {move || format!("{} / {}", mine.get().sent, mine.get().received)}
                        </td>
                        <td hidden=move || !shared_on.get() id="stat-shared-counts" data-received=move || theirs.get().received.to_string()>
                            {move || format!("{} / {}", theirs.get().sent, theirs.get().received)}
                        </td>
                    </tr>
                </tbody>
            </table>
        </section>
    }
}
