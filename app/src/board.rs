//! The pod board: every pod of the pool as a tile, kept up to date from `GET /pool/events` (a snapshot, then
//! changes). Plain Rust: [`Board::apply`] takes one event, and the tiles say which pod is the visitor's own.

use common::api::{BoardPod, BoardState, PoolEvent};

/// One tile.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// The pod.
    pub pod: BoardPod,
    /// Page clock (ms) when the pod's age was last reported, to let the tile's age keep counting.
    pub seen_at: f64,
}

impl Tile {
    /// The pod's age at `now` (page clock), in seconds.
    pub fn age_s(&self, now: f64) -> f64 {
        (self.pod.age_ms as f64 + (now - self.seen_at).max(0.0)) / 1000.0
    }
}

/// The board's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Board {
    tiles: Vec<Tile>,
    /// Warm pods the pool aims to keep.
    pub target: u32,
    /// Most sessions at once.
    pub max_sessions: u32,
    /// Whether a snapshot has arrived (before it, the board knows nothing).
    pub live: bool,
}

impl Board {
    /// Applies one event received at `now` (page clock).
    pub fn apply(&mut self, event: PoolEvent, now: f64) {
        match event {
            PoolEvent::Snapshot {
                pods,
                target,
                max_sessions,
            } => {
                self.tiles.clear();
                for pod in pods {
                    self.upsert(Tile { pod, seen_at: now });
                }
                self.target = target;
                self.max_sessions = max_sessions;
                self.live = true;
            }
            PoolEvent::Pod { pod } => self.upsert(Tile { pod, seen_at: now }),
            PoolEvent::Gone { name } => self.tiles.retain(|t| t.pod.name != name),
        }
    }

    /// Puts `tile` in its place by pod name, replacing the pod's earlier tile. (Kept sorted on insert, not
    /// sorted after: one binary search, and no sort routine in the wasm for a list of a few dozen.)
    fn upsert(&mut self, tile: Tile) {
        match self.tiles.binary_search_by(|t| t.pod.name.cmp(&tile.pod.name)) {
            Ok(i) => self.tiles[i] = tile,
            Err(i) => self.tiles.insert(i, tile),
        }
    }

    /// Every tile, by pod name.
    pub fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    /// Pods in `state`.
    pub fn count(&self, state: BoardState) -> usize {
        self.tiles.iter().filter(|t| t.pod.state == state).count()
    }
}

/// The word a tile shows for its state.
pub fn state_label(state: BoardState) -> &'static str {
    match state {
        BoardState::Starting => "starting",
        BoardState::Warm => "warm",
        BoardState::Assigned => "assigned",
        BoardState::Terminating => "terminating",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, state: BoardState, age_ms: u64) -> BoardPod {
        BoardPod {
            name: name.into(),
            state,
            age_ms,
            node: Some("n1".into()),
        }
    }

    #[test]
    fn a_kill_moves_the_tiles_as_the_pool_heals() {
        let mut board = Board::default();
        assert!(!board.live);
        board.apply(
            PoolEvent::Snapshot {
                pods: vec![
                    pod("a", BoardState::Assigned, 5_000),
                    pod("b", BoardState::Warm, 1_000),
                ],
                target: 1,
                max_sessions: 20,
            },
            100.0,
        );
        assert!(board.live);
        assert_eq!(
            (board.count(BoardState::Warm), board.count(BoardState::Assigned)),
            (1, 1)
        );
        // Kill: a terminates, b becomes the visitor's, c starts and turns warm, a goes.
        board.apply(
            PoolEvent::Pod {
                pod: pod("a", BoardState::Terminating, 5_050),
            },
            150.0,
        );
        board.apply(
            PoolEvent::Pod {
                pod: pod("b", BoardState::Assigned, 1_050),
            },
            150.0,
        );
        board.apply(
            PoolEvent::Pod {
                pod: pod("c", BoardState::Starting, 0),
            },
            151.0,
        );
        board.apply(PoolEvent::Gone { name: "a".into() }, 160.0);
        board.apply(
            PoolEvent::Pod {
                pod: pod("c", BoardState::Warm, 30),
            },
            190.0,
        );
        let names: Vec<&str> = board.tiles().iter().map(|t| t.pod.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(board.count(BoardState::Warm), 1);
        assert_eq!(board.tiles()[0].pod.state, BoardState::Assigned);
        // Ages keep counting on the page's clock between events.
        assert_eq!(board.tiles()[1].age_s(1_190.0), 1.03);
    }
}
