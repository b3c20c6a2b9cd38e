//! Reading session pods: which pool entry a pod is (its Job's name), whether it is ready or gone, whom it
//! serves, and the [`PodEvent`] a watch event means. Pure functions over `Pod` objects, so every rule is
//! unit-tested without a cluster.

use std::time::Duration;

use common::ids::{PodName, SessionId};
use common::labels;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;

use crate::backend::{PodEvent, PodPhase, PodRecord};

/// The pool's name for this pod: the name of the Job that owns it.
pub fn pool_name(pod: &Pod) -> Option<&str> {
    label(pod, labels::JOB_NAME)
}

fn label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Deleted, being deleted, or finished: it will never serve again.
pub fn is_gone(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Running with its `Ready` condition true.
pub fn is_ready(pod: &Pod) -> bool {
    !is_gone(pod)
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// Whether a provisioner recorded that the pod's session ended.
pub fn is_ended(pod: &Pod) -> bool {
    label(pod, labels::ENDED) == Some("true")
}

/// The session the pod is labelled for, if it is assigned.
pub fn session(pod: &Pod) -> Option<&str> {
    (label(pod, labels::ASSIGNED) == Some("true"))
        .then(|| label(pod, labels::SESSION_ID))
        .flatten()
}

/// Whether the pod is ready and nobody has claimed it.
pub fn is_claimable(pod: &Pod) -> bool {
    is_ready(pod) && label(pod, labels::ASSIGNED) == Some("false")
}

/// The pod's `ip:port` for `port`, once it has an IP.
pub fn address(pod: &Pod, port: u16) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    Some(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// How long its session has lasted at `now_ms` (Unix milliseconds), from the claim annotation.
pub fn session_age(pod: &Pod, now_ms: u64) -> Option<Duration> {
    let started: u64 = pod
        .metadata
        .annotations
        .as_ref()?
        .get(labels::SESSION_STARTED_ANNOTATION)?
        .parse()
        .ok()?;
    Some(Duration::from_millis(now_ms.saturating_sub(started)))
}

/// The pool's view of a live pod; `None` for pods that are gone or not from a session Job. `template` is the
/// current template hash: pods of another one are `outdated`.
pub fn record(pod: &Pod, now_ms: u64, template: &str) -> Option<PodRecord> {
    if is_gone(pod) {
        return None;
    }
    Some(PodRecord {
        name: PodName::new(pool_name(pod)?),
        phase: if is_ready(pod) {
            PodPhase::Ready
        } else {
            PodPhase::Starting
        },
        session: session(pod).map(SessionId::new),
        session_age: session_age(pod, now_ms),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        outdated: label(pod, labels::TEMPLATE) != Some(template),
        ended: is_ended(pod),
        age: pod.metadata.creation_timestamp.as_ref().map(|created| {
            let created_ms = u64::try_from(created.0.as_millisecond()).unwrap_or(0);
            Duration::from_millis(now_ms.saturating_sub(created_ms))
        }),
    })
}

/// What a watch event tells the pool, if anything.
pub fn event(event: &watcher::Event<Pod>) -> Option<PodEvent> {
    match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
            let name = PodName::new(pool_name(pod)?);
            if is_ended(pod)
                && let Some(session) = session(pod)
            {
                Some(PodEvent::Ended {
                    name,
                    session: SessionId::new(session),
                })
            } else if is_gone(pod) {
                Some(PodEvent::Exited { name })
            } else if is_ready(pod) {
                Some(PodEvent::Ready {
                    name,
                    node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                })
            } else {
                None
            }
        }
        watcher::Event::Delete(pod) => Some(PodEvent::Exited {
            name: PodName::new(pool_name(pod)?),
        }),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, ready: bool, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "session-ab-x1", "labels": labels,
                         "annotations": {labels::SESSION_STARTED_ANNOTATION: "1000"}},
            "spec": {"nodeName": "kwok-node-0", "containers": []},
            "status": {"phase": phase, "podIP": "10.0.0.7",
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn warm() -> serde_json::Value {
        json!({labels::JOB_NAME: "session-ab", "assigned": "false", labels::TEMPLATE: "t1"})
    }

    #[test]
    fn ready_unassigned_pods_are_claimable_and_named_by_their_job() {
        let p = pod("Running", true, warm());
        assert_eq!(pool_name(&p), Some("session-ab"));
        assert!(is_ready(&p) && is_claimable(&p));
        assert_eq!(address(&p, 8080).as_deref(), Some("10.0.0.7:8080"));
        let r = record(&p, 5_000, "t1").unwrap();
        assert_eq!(
            (r.name.as_str(), r.phase, r.session, r.node.as_deref()),
            ("session-ab", PodPhase::Ready, None, Some("kwok-node-0"))
        );
        assert_eq!(r.session_age, Some(Duration::from_secs(4)));
        assert!(!r.outdated);
        assert!(record(&pod("Running", true, warm()), 0, "t2").unwrap().outdated);
        assert_eq!(
            event(&watcher::Event::Apply(p)),
            Some(PodEvent::Ready {
                name: "session-ab".into(),
                node: Some("kwok-node-0".into())
            })
        );
    }

    #[test]
    fn assigned_pods_report_their_session() {
        let p = pod(
            "Running",
            true,
            json!({labels::JOB_NAME: "session-ab", "assigned": "true", "session-id": "s1"}),
        );
        assert!(!is_claimable(&p));
        assert_eq!(record(&p, 0, "t1").unwrap().session, Some("s1".into()));
    }

    #[test]
    fn pending_pods_start_and_finished_or_deleted_pods_are_gone() {
        let pending = pod("Pending", false, warm());
        assert_eq!(record(&pending, 0, "t1").unwrap().phase, PodPhase::Starting);
        assert_eq!(event(&watcher::Event::Apply(pending.clone())), None);
        assert!(!is_claimable(&pending));

        for phase in ["Failed", "Succeeded"] {
            let done = pod(phase, true, warm());
            assert!(is_gone(&done) && !is_ready(&done) && record(&done, 0, "t1").is_none());
            assert_eq!(
                event(&watcher::Event::Apply(done)),
                Some(PodEvent::Exited {
                    name: "session-ab".into()
                })
            );
        }
        let mut deleting = pod("Running", true, warm());
        deleting.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-11-26T00:00:00Z")).unwrap());
        assert!(is_gone(&deleting) && !is_claimable(&deleting));
        assert_eq!(
            event(&watcher::Event::Delete(pod("Running", true, warm()))),
            Some(PodEvent::Exited {
                name: "session-ab".into()
            })
        );
        // Not a Job's pod: ignored.
        assert_eq!(
            event(&watcher::Event::Apply(pod("Running", true, json!({})))),
            None
        );
    }
}
