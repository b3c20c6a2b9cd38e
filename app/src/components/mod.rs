//! The page's components. [`App`] owns the [`Demo`] state and the page-wide settings (window, theme) and passes
//! them down; each child is a small function of its props.

mod chart_view;
mod controls;
mod panels;

use leptos::prelude::*;

use crate::api::Api;
use crate::browser;
use crate::config::{SiteConfig, api_base};
use crate::driver::Demo;
use chart_view::ChartView;
use controls::Controls;
use panels::{PodPanel, PoolPanel, StatsPanel};

/// A counter signal bumped every `period` for as long as the calling component lives: reading it in a closure
/// or effect re-runs that on a clock (cooldowns ending, the chart scrolling with time).
pub fn ticker(period: std::time::Duration) -> RwSignal<u32> {
    let tick = RwSignal::new(0_u32);
    let handle = set_interval_with_handle(move || tick.update(|t| *t = t.wrapping_add(1)), period);
    on_cleanup(move || {
        if let Ok(handle) = handle {
            handle.clear();
        }
    });
    tick
}

/// The visible time windows, in seconds.
pub const WINDOWS: [(u32, &str); 3] = [(30, "30 s"), (300, "5 min"), (3600, "1 h")];

/// Loads `config.json`, then mounts the demo.
#[component]
pub fn App() -> impl IntoView {
    let api = RwSignal::new(None::<Api>);
    leptos::task::spawn_local(async move {
        let config = match gloo_net::http::Request::get("config.json").send().await {
            Ok(response) if response.ok() => match response.text().await {
                Ok(text) => crate::json::parse::<SiteConfig>(&text).unwrap_or_default(),
                Err(_) => SiteConfig::default(),
            },
            _ => SiteConfig::default(),
        };
        let (query, origin) = browser::location();
        api.set(Some(Api::new(api_base(&query, &config, &origin))));
    });
    view! {
        <header class="top">
            <h1>"Pod lifecycle, live"</h1>
            <p class="tagline">
                "Your own pod, pinged from this tab. Kill it and watch the warm pool heal the session."
            </p>
        </header>
        {move || match api.get() {
            Some(api) => view! { <Dashboard api=api /> }.into_any(),
            None => view! { <p class="loading">"Loading configuration…"</p> }.into_any(),
        }}
        <footer>
            "Rust end to end: Leptos + plotters in WebAssembly, axum ping servers, a warm-pool provisioner. "
            <a href="https://github.com/resume-showcase/resume-showcase">"Source"</a>
        </footer>
    }
}

/// Everything below the header, once the API base is known.
#[component]
fn Dashboard(api: Api) -> impl IntoView {
    let api_label = api.base().to_owned();
    let demo = Demo::new(api);
    demo.watch_pool();
    demo.end_on_page_hide();
    let window_s = RwSignal::new(30_u32);
    let dark = RwSignal::new(browser::prefers_dark());
    Effect::new(move |_| browser::set_theme_attribute(dark.get()));
    browser::on_visibility_change(move |hidden| {
        let kind = if hidden {
            crate::samples::EventKind::Hidden
        } else {
            crate::samples::EventKind::Visible
        };
        demo.history.update(|h| h.mark(browser::now(), kind));
    });
    // Start measuring at once: the page exists to show live latency.
    demo.start();
    let resolution = browser::timer_resolution_ms();
    let isolated = browser::cross_origin_isolated();
    view! {
        <main>
            <Controls demo=demo window_s=window_s dark=dark />
            <Show when=move || demo.notice.get().is_some()>
                <p class="notice" role="status">{move || demo.notice.get().unwrap_or_default()}</p>
            </Show>
            <section class="grid">
                <PodPanel demo=demo />
                <PoolPanel demo=demo />
            </section>
            <ChartView demo=demo window_s=window_s dark=dark />
            <StatsPanel demo=demo window_s=window_s />
            <p class="fineprint">
                {format!(
                    "Provisioner: {api_label}. Timer resolution here: {} ({}).",
                    crate::stats::format_resolution(resolution),
                    if isolated { "cross-origin isolated" } else { "not cross-origin isolated: the browser coarsens timers" },
                )}
            </p>
        </main>
    }
}
