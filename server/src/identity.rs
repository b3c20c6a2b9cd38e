//! Who this server is: the [`PodInfo`] it announces in `hello` and the session it belongs to, resolved once
//! from the configuration at start-up.

use common::protocol::PodInfo;

use crate::Config;

/// The identity of this process, shared by every connection.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Pod name, display name, node and zone.
    pub pod: PodInfo,
    /// The session this pod serves, if it is a session pod.
    pub session_id: Option<String>,
}

impl Identity {
    /// Resolves the identity from flags and environment (host name as the fallback pod name).
    pub fn from_config(config: &Config) -> Self {
        let name = config.resolved_pod_name();
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        Self {
            pod: PodInfo {
                display_name: common::names::display_name(&name),
                name,
                node: non_empty(&config.node_name),
                zone: non_empty(&config.zone),
            },
            session_id: non_empty(&config.session_id),
        }
    }
}
