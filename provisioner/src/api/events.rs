//! `GET /pool/events`: the pod board pushed as server-sent events, a snapshot first and then each change, so
//! the page shows pods starting, turning warm, being assigned and going away as it happens, without polling.
//!
//! Public by design, and so holding nothing private: pod names, states, ages and nodes; no session id, token or
//! address. Each stream counts against its client's share of long-lived connections
//! (`--max-streams-per-client`), and every stream ends when the provisioner begins to shut down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use common::api::{ApiErrorCode, BoardPod, PoolEvent};
use common::client::ClientShare;
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ApiState;
use super::error::ApiError;
use super::guard::Client;
use crate::backend::Backend;

/// What one stream remembers between events.
struct Feed {
    board: watch::Receiver<Vec<BoardPod>>,
    shown: Option<Vec<BoardPod>>,
    target: u32,
    max_sessions: u32,
    stop: CancellationToken,
    /// Held while the stream lives: the client's share.
    _share: ClientShare,
}

/// `GET /pool/events`.
pub async fn pool_events<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    Client(client): Client,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let share = state.streams.take(client).ok_or_else(|| {
        state.metrics.reject(ApiErrorCode::TooManyClientConnections);
        ApiError::new(
            ApiErrorCode::TooManyClientConnections,
            "your address holds as many event streams as one address may; close one",
        )
        .retry_after(Duration::from_secs(5))
    })?;
    let config = state.pool.config();
    let feed = Feed {
        board: state.pool.watch_board(),
        shown: None,
        target: config.warm_target,
        max_sessions: config.max_sessions,
        stop: state.draining.clone(),
        _share: share,
    };
    let events = stream::unfold(feed, next).flat_map(stream::iter);
    Ok(Sse::new(events.map(Ok)).keep_alive(KeepAlive::default()))
}

/// The next batch of events: the snapshot first, then what changed; `None` ends the stream (shutdown).
async fn next(mut feed: Feed) -> Option<(Vec<Event>, Feed)> {
    let Some(shown) = feed.shown.take() else {
        let pods = feed.board.borrow_and_update().clone();
        let snapshot = PoolEvent::Snapshot {
            pods: pods.clone(),
            target: feed.target,
            max_sessions: feed.max_sessions,
        };
        feed.shown = Some(pods);
        return Some((vec![event(&snapshot)], feed));
    };
    tokio::select! {
        () = feed.stop.cancelled() => None,
        changed = feed.board.changed() => {
            changed.ok()?;
            let now = feed.board.borrow_and_update().clone();
            let events = changes(&shown, &now).iter().map(event).collect();
            feed.shown = Some(now);
            Some((events, feed))
        }
    }
}

/// The events that turn board `before` into `after` (both sorted by name).
pub fn changes(before: &[BoardPod], after: &[BoardPod]) -> Vec<PoolEvent> {
    let mut events: Vec<PoolEvent> = before
        .iter()
        .filter(|old| !after.iter().any(|new| new.name == old.name))
        .map(|old| PoolEvent::Gone {
            name: old.name.clone(),
        })
        .collect();
    for pod in after {
        let same = before
            .iter()
            .any(|old| old.name == pod.name && old.state == pod.state && old.node == pod.node);
        if !same {
            events.push(PoolEvent::Pod { pod: pod.clone() });
        }
    }
    events
}

fn event(pool_event: &PoolEvent) -> Event {
    let name = match pool_event {
        PoolEvent::Snapshot { .. } => "snapshot",
        PoolEvent::Pod { .. } => "pod",
        PoolEvent::Gone { .. } => "gone",
    };
    Event::default()
        .event(name)
        .data(serde_json::to_string(pool_event).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::BoardState;

    fn pod(name: &str, state: BoardState) -> BoardPod {
        BoardPod {
            name: name.into(),
            state,
            age_ms: 0,
            node: None,
        }
    }

    #[test]
    fn changes_name_what_came_went_and_moved() {
        let before = [pod("a", BoardState::Warm), pod("b", BoardState::Assigned)];
        let after = [pod("a", BoardState::Assigned), pod("c", BoardState::Starting)];
        assert_eq!(
            changes(&before, &after),
            [
                PoolEvent::Gone { name: "b".into() },
                PoolEvent::Pod {
                    pod: pod("a", BoardState::Assigned)
                },
                PoolEvent::Pod {
                    pod: pod("c", BoardState::Starting)
                },
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }
}
