//! The page's components. [`App`] loads the configuration and mounts the [`Dashboard`], which owns the [`Demo`]
//! and the page-wide settings (window, view, theme) and hands each child the read-only signals it shows; only
//! the controls get the demo itself, for its commands.

mod board;
mod chart_view;
mod controls;
mod panels;
mod waterfall;

use leptos::prelude::*;

use crate::api::Api;
use crate::browser;
use crate::config::{SiteConfig, api_base};
use crate::driver::Demo;
use board::PodBoard;
use chart_view::{ChartKind, ChartView};
use controls::Controls;
use panels::{PodPanel, StatsPanel};
use waterfall::Waterfall;

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

/// Where everything is: the provisioner, and the shared servers (config.json, else the provisioner's `/info`).
#[derive(Clone)]
struct Setup {
    api: Api,
    shared: Vec<String>,
}

/// Loads `config.json`, then mounts the demo.
#[component]
pub fn App() -> impl IntoView {
    let setup = RwSignal::new(None::<Setup>);
    leptos::task::spawn_local(async move {
        let config = match gloo_net::http::Request::get("config.json").send().await {
            Ok(response) if response.ok() => match response.text().await {
                Ok(text) => crate::json::parse::<SiteConfig>(&text).unwrap_or_default(),
                Err(_) => SiteConfig::default(),
            },
            _ => SiteConfig::default(),
        };
        let (query, origin) = browser::location();
        let api = Api::new(api_base(&query, &config, &origin));
        // The shared servers' addresses do not hold up the session: the demo starts at once and the second
        // series is offered once they are known.
        let shared = config.shared.clone();
        setup.set(Some(Setup {
            api,
            shared: shared.unwrap_or_default(),
        }));
    });
    view! {
        <header class="top">
            <h1>"Pod lifecycle, live"</h1>
            <p class="tagline">
                "Your own pod, pinged from this tab. Kill it and watch the warm pool heal the session."
            </p>
        </header>
        {move || match setup.get() {
            Some(setup) => view! { <Dashboard api=setup.api shared=setup.shared /> }.into_any(),
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
fn Dashboard(api: Api, shared: Vec<String>) -> impl IntoView {
    let api_label = api.base().to_owned();
    // One of the shared servers, picked at random for the page's life as a load balancer would spread
    // visitors. An `Option<String>`, a type the page's signals already have, not the list (each signal type
    // costs the page code); so if that server is down, switching the series off and on does not try another.
    let pick = |urls: Vec<String>| {
        let index = (js_sys::Math::random() * urls.len() as f64) as usize;
        urls.into_iter().nth(index)
    };
    let shared_known = RwSignal::new(pick(shared));
    let demo = Demo::new(api.clone());
    // Start measuring at once: the page exists to show live latency.
    demo.start();
    demo.watch_pool();
    demo.end_on_page_hide();
    if shared_known.with_untracked(Option::is_none) {
        leptos::task::spawn_local(async move {
            if let Ok(info) = api.info().await {
                shared_known.set(pick(info.shared));
            }
        });
    }
    let window_s = RwSignal::new(30_u32);
    let kind = RwSignal::new(ChartKind::Series);
    let dark = RwSignal::new(browser::stored_theme().unwrap_or_else(browser::prefers_dark));
    Effect::new(move |_| browser::set_theme(dark.get()));
    browser::on_visibility_change(move |hidden| {
        demo.mark(if hidden {
            crate::samples::EventKind::Hidden
        } else {
            crate::samples::EventKind::Visible
        });
    });
    let resolution = browser::timer_resolution_ms();
    let isolated = browser::cross_origin_isolated();
    view! {
        <main>
            <Controls demo=demo window_s=window_s kind=kind dark=dark shared=shared_known />
            <p class="sr-only" aria-live="polite" id="announcer">{move || demo.announcement().get()}</p>
            {move || demo.notice().get().map(|text| view! { <p class="notice" role="status">{text}</p> })}
            <section class="grid">
                <PodPanel pod=demo.pod() provisioned=demo.provisioned() />
                <PodBoard board=demo.board() pool=demo.pool() mine=demo.pod() />
            </section>
            <section class="chart-row">
                <ChartView
                    history=demo.history()
                    shared=demo.shared_history()
                    shared_on=demo.shared_on()
                    window_s=window_s
                    kind=kind
                    dark=dark
                />
                <Waterfall trace=demo.waterfall() />
            </section>
            <StatsPanel history=demo.history() shared=demo.shared_history() shared_on=demo.shared_on() window_s=window_s />
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
