//! The pod board: every pod of the pool as a tile (its state, age and node), the visitor's own marked, kept live
//! by the pool's event stream. When the stream is not available, the pool's counts from the fallback poll.

use common::api::{PoolStatus, SessionPod};
use leptos::prelude::*;

use crate::board::{Board, state_label};
use crate::browser;
use crate::driver::counts;

/// The board.
#[component]
pub fn PodBoard(
    board: ReadSignal<Board>,
    pool: ReadSignal<Option<PoolStatus>>,
    mine: ReadSignal<Option<SessionPod>>,
) -> impl IntoView {
    // Ages count on between events.
    let tick = super::ticker(std::time::Duration::from_secs(1));
    let count = move |which: usize| {
        move || {
            board.with(|b| {
                if b.live {
                    let (warm, starting, assigned) = counts(b);
                    [warm, starting, assigned][which].to_string()
                } else {
                    pool.get().map_or_else(
                        || "–".to_owned(),
                        |p| [p.warm, p.starting, p.assigned][which].to_string(),
                    )
                }
            })
        }
    };
    let tiles = move || {
        tick.track();
        let now = browser::now();
        let mine = mine.get().map(|p| p.name);
        board.with(|b| {
            b.tiles()
                .iter()
                .map(|tile| {
                    let state = state_label(tile.pod.state);
                    let own = mine.as_ref() == Some(&tile.pod.name);
                    let name = common::names::display_name(tile.pod.name.as_str());
                    let age = format!("{:.0} s", tile.age_s(now));
                    let node = tile.pod.node.clone().unwrap_or_else(|| "–".to_owned());
                    view! {
                        <li class="tile" data-state=state data-pod=tile.pod.name.to_string() data-mine=own.to_string()>
                            <span class="tile-name">{name}</span>
                            <span class="tile-state">{if own { format!("{state} · yours") } else { state.to_owned() }}</span>
                            <span class="tile-meta">{age}" · "{node}</span>
                        </li>
                    }
                })
                .collect_view()
        })
    };
    view! {
        <section class="card" aria-labelledby="pool-title">
            <h2 id="pool-title">"Warm pool"</h2>
            <p class="counts-line">
                "warm " <b id="pool-warm">{count(0)}</b>
                " · starting " <b id="pool-starting">{count(1)}</b>
                " · assigned " <b id="pool-assigned">{count(2)}</b>
                {move || board.with(|b| b.live.then(|| format!(" · target {} of {}", b.target, b.max_sessions)))}
            </p>
            <ul class="board" id="board" aria-label="Pods of the pool">{tiles}</ul>
        </section>
    }
}
