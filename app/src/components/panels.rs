//! The information panels: the session's pod, the warm pool, and the statistics of the visible window.

use common::api::ProvisionSource;
use leptos::prelude::*;

use crate::browser;
use crate::driver::Demo;
use crate::stats::{Stats, format_ms};

/// Who answers: the pod's friendly name, real name, node, and how it was provisioned.
#[component]
pub fn PodPanel(demo: Demo) -> impl IntoView {
    let field = move |f: fn(&common::api::SessionPod) -> Option<String>| {
        move || {
            demo.pod
                .get()
                .as_ref()
                .and_then(f)
                .unwrap_or_else(|| "–".to_owned())
        }
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
                    {move || match demo.provisioned.get() {
                        Some((ProvisionSource::Warm, ms)) => format!("warm, in {}", format_ms(Some(ms))),
                        Some((ProvisionSource::Cold, ms)) => format!("cold start, in {}", format_ms(Some(ms))),
                        None => "–".to_owned(),
                    }}
                </dd>
            </dl>
        </section>
    }
}

/// Live counts from `GET /pool`.
#[component]
pub fn PoolPanel(demo: Demo) -> impl IntoView {
    let count = move |f: fn(&common::api::PoolStatus) -> u32| {
        move || {
            demo.pool
                .get()
                .map_or_else(|| "–".to_owned(), |p| f(&p).to_string())
        }
    };
    view! {
        <section class="card" aria-labelledby="pool-title">
            <h2 id="pool-title">"Warm pool"</h2>
            <dl class="counts">
                <dt>"Warm"</dt>
                <dd id="pool-warm">{count(|p| p.warm)}</dd>
                <dt>"Starting"</dt>
                <dd id="pool-starting">{count(|p| p.starting)}</dd>
                <dt>"Assigned"</dt>
                <dd id="pool-assigned">{count(|p| p.assigned)}</dd>
                <dt>"Target / max sessions"</dt>
                <dd>{move || demo.pool.get().map_or_else(|| "–".to_owned(), |p| format!("{} / {}", p.target, p.max_sessions))}</dd>
            </dl>
        </section>
    }
}

/// Statistics over the visible window.
#[component]
pub fn StatsPanel(demo: Demo, window_s: RwSignal<u32>) -> impl IntoView {
    let stats = Memo::new(move |_| {
        let from = browser::now() - f64::from(window_s.get()) * 1000.0;
        demo.history.with(|h| Stats::of(h.since(from)))
    });
    let ms = move |f: fn(&Stats) -> Option<f64>| move || format_ms(f(&stats.get()));
    view! {
        <section class="card stats" aria-labelledby="stats-title">
            <h2 id="stats-title">"Round trip, visible window"</h2>
            <dl>
                <dt>"Last"</dt><dd id="stat-last">{ms(|s| s.last)}</dd>
                <dt>"Min"</dt><dd>{ms(|s| s.min)}</dd>
                <dt>"Median"</dt><dd id="stat-median">{ms(|s| s.median)}</dd>
                <dt>"Mean"</dt><dd>{ms(|s| s.mean)}</dd>
                <dt>"p95"</dt><dd>{ms(|s| s.p95)}</dd>
                <dt>"p99"</dt><dd>{ms(|s| s.p99)}</dd>
                <dt>"Max"</dt><dd>{ms(|s| s.max)}</dd>
                <dt>
                    <abbr title="Mean absolute difference between consecutive round trips">"Jitter"</abbr>
                </dt>
                <dd>{ms(|s| s.jitter)}</dd>
                <dt>"Std dev"</dt><dd>{ms(|s| s.std_dev)}</dd>
                <dt>"Loss"</dt><dd id="stat-loss">{move || format!("{:.1} %", stats.get().loss_pct)}</dd>
                <dt>"Sent / received"</dt>
                <dd id="stat-counts" data-received=move || stats.get().received.to_string()>
                    {move || format!("{} / {}", stats.get().sent, stats.get().received)}
                </dd>
            </dl>
        </section>
    }
}
