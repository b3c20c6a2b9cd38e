//! Kubernetes label and annotation keys and values of session pods: the provisioner writes them, selectors and
//! the Helm chart (NetworkPolicy, cleanup on uninstall) read them. One place, so they never disagree.

/// `app.kubernetes.io/name`: the application.
pub const APP_NAME: &str = "app.kubernetes.io/name";
/// Value of [`APP_NAME`].
pub const APP: &str = "resume-showcase";
/// `app.kubernetes.io/component`: which part of the application.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Value of [`COMPONENT`] on session pods and their Jobs.
pub const COMPONENT_SESSION: &str = "session";
/// `app.kubernetes.io/managed-by`: who created the object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`] on objects the provisioner creates.
pub const MANAGED_BY_PROVISIONER: &str = "resume-showcase-provisioner";
/// `pool`: membership in the warm pool.
pub const POOL: &str = "pool";
/// Value of [`POOL`].
pub const POOL_WARM: &str = "warm";
/// `assigned`: `"true"` once the pod serves a session, `"false"` while it waits in the pool.
pub const ASSIGNED: &str = "assigned";
/// `session-id`: the session a pod serves (absent while unassigned).
pub const SESSION_ID: &str = "session-id";
/// `ended`: `"true"` once the pod's session has ended, written by the provisioner that ended it before it
/// deletes the pod, so that every replica sees the ending and none replaces the pod.
pub const ENDED: &str = "ended";

/// Label the Job controller puts on a Job's pods: the pool names a pod after its Job.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// Label carrying the fingerprint of the pod template a pod was made from: pods of an older template (an
/// upgrade changed the image, resources, origins…) are recycled while warm; assigned ones finish their session.
pub const TEMPLATE: &str = "resume-showcase.dev/template";
/// Annotation recording when the pod's session began (Unix milliseconds), so a restarted provisioner knows the
/// session's age.
pub const SESSION_STARTED_ANNOTATION: &str = "resume-showcase.dev/session-started-ms";

/// The label selector of every pod and Job of the pool.
pub fn pool_selector() -> String {
    format!("{APP_NAME}={APP},{COMPONENT}={COMPONENT_SESSION},{POOL}={POOL_WARM}")
}

/// The label selector of one release's pool: the pool's labels plus the release's own (`--session-label`s such as
/// `app.kubernetes.io/instance=demo`), so that two releases in one namespace never adopt each other's pods.
pub fn release_pool_selector<'a>(extra: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut selector = pool_selector();
    for (key, value) in extra {
        selector.push_str(&format!(",{key}={value}"));
    }
    selector
}

/// The label selector of the pool's ready-to-claim pods.
pub fn unassigned_selector() -> String {
    format!("{},{ASSIGNED}=false", pool_selector())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_exact() {
        assert_eq!(
            pool_selector(),
            "app.kubernetes.io/name=resume-showcase,app.kubernetes.io/component=session,pool=warm"
        );
        assert!(unassigned_selector().ends_with(",assigned=false"));
        assert_eq!(
            release_pool_selector([("app.kubernetes.io/instance", "demo")]),
            format!("{},app.kubernetes.io/instance=demo", pool_selector())
        );
    }
}
