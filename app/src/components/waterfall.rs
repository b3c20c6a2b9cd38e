//! The last kill's recovery, step by step: a small waterfall of bars beside the chart, and the same as text.

use leptos::prelude::*;

use crate::waterfall::KillTrace;

/// The waterfall.
#[component]
pub fn Waterfall(trace: ReadSignal<Option<KillTrace>>) -> impl IntoView {
    let rows = move || {
        trace.with(|trace| {
            let Some(trace) = trace else {
                return view! { <p class="muted">"Kill your pod to see the recovery, step by step."</p> }.into_any();
            };
            let steps = trace.steps();
            let total = steps.last().map_or(1.0, |s| s.at_ms).max(1.0);
            let mut previous = 0.0;
            let bars = steps
                .iter()
                .map(|step| {
                    let left = previous / total * 100.0;
                    let width = ((step.at_ms - previous) / total * 100.0).max(0.5);
                    let delta = step.at_ms - previous;
                    previous = step.at_ms;
                    view! {
                        <li class="step" data-step=step.label data-at=format!("{:.3}", step.at_ms)>
                            <span class="step-label">{step.label}</span>
                            <span class="step-bar"><span style=format!("margin-left:{left:.1}%;width:{width:.1}%")></span></span>
                            <span class="step-ms">{format!("{:.1} ms (+{delta:.1})", step.at_ms)}</span>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <ol class="waterfall" id="waterfall">{bars}</ol>
                <pre class="sr-only" id="waterfall-text">{trace.text()}</pre>
            }
            .into_any()
        })
    };
    view! {
        <section class="card waterfall-card" aria-labelledby="waterfall-title">
            <h2 id="waterfall-title">"Recovery after the last kill"</h2>
            {rows}
        </section>
    }
}
