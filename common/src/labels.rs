//! Kubernetes label keys and values of session pods: the provisioner writes them, selectors and the Helm chart
//! (NetworkPolicy, cleanup on uninstall) read them. One place, so the three never disagree.

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

/// The label selector of every pod and Job of the pool.
pub fn pool_selector() -> String {
    format!("{APP_NAME}={APP},{COMPONENT}={COMPONENT_SESSION},{POOL}={POOL_WARM}")
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
    }
}
