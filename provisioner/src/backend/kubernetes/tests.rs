//! The exact requests of the Kubernetes backend, against a mocked API server (`tower-test`, the pattern of
//! kube-rs `controller-rs`): the Job it posts, the claim's labels and `resourceVersion` precondition, the
//! conflict paths, deletions, and which failures are retried.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::backend::Backend;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "showcase";

fn settings() -> KubeSettings {
    KubeSettings {
        namespace: NS.into(),
        pod: SessionPodSpec::default(),
        edge_url: "wss://edge.test/".into(),
        route_ttl: Duration::from_secs(60),
        key: SigningKey::new(vec![7; 32]).unwrap(),
        session_max_age: Duration::from_secs(3600),
        owner: None,
    }
}

/// A ready, unclaimed pod of Job `session-ab` at resourceVersion 42.
fn warm_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "session-ab-x1", "namespace": NS, "resourceVersion": "42", "uid": "u-1",
            "labels": {labels::JOB_NAME: "session-ab", "assigned": "false"},
        },
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {"phase": "Running", "podIP": "10.0.0.9",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

/// A backend whose cache holds `pods`, talking to a mock API server.
fn mocked(pods: Vec<Pod>) -> (KubernetesBackend, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let (store, mut writer) = reflector::store();
    for pod in pods {
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    let backend = KubernetesBackend::from_parts(client, settings(), store, CancellationToken::new()).unwrap();
    (backend, handle)
}

/// Takes the next request, checks its method and path, and returns its JSON body (Null when empty).
async fn expect(
    handle: &mut Handle,
    method: Method,
    path: &str,
) -> (Value, tower_test::mock::SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request")
        .expect("the client is alive");
    assert_eq!(request.method(), method);
    assert_eq!(request.uri().path(), path);
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

fn reply(send: tower_test::mock::SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
           "message": format!("mock {reason}")})
}

async fn no_more_requests(handle: &mut Handle) {
    let next = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(next.is_err(), "unexpected request");
}

const JOBS: &str = "/apis/batch/v1/namespaces/showcase/jobs";
const PODS: &str = "/api/v1/namespaces/showcase/pods";

#[tokio::test]
async fn create_posts_the_job_and_retries_server_errors() {
    let (backend, mut handle) = mocked(Vec::new());
    let server = tokio::spawn(async move {
        let (body, send) = expect(&mut handle, Method::POST, JOBS).await;
        assert_eq!(body["metadata"]["name"], "session-new");
        let labels = &body["metadata"]["labels"];
        assert_eq!(labels["pool"], "warm");
        assert_eq!(labels["assigned"], "false");
        assert_eq!(labels["app.kubernetes.io/component"], "session");
        assert_eq!(body["spec"]["backoffLimit"], 0);
        reply(
            send,
            StatusCode::SERVICE_UNAVAILABLE,
            &status_body(503, "ServiceUnavailable"),
        );
        let (again, send) = expect(&mut handle, Method::POST, JOBS).await;
        assert_eq!(again, body, "the retry sends the same Job");
        reply(send, StatusCode::CREATED, &again);
        handle
    });
    backend.create(&"session-new".into()).await.unwrap();
    no_more_requests(&mut server.await.unwrap()).await;
}

#[tokio::test]
async fn create_failures_are_final_or_retried_then_unavailable() {
    // 403 (e.g. a quota) is final at once.
    let (backend, mut handle) = mocked(Vec::new());
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::POST, JOBS).await;
        reply(send, StatusCode::FORBIDDEN, &status_body(403, "Forbidden"));
        handle
    });
    let error = backend.create(&"session-new".into()).await.unwrap_err();
    assert!(
        matches!(&error, BackendError::Unavailable(m) if m.contains("403")),
        "{error}"
    );
    no_more_requests(&mut server.await.unwrap()).await;

    // 500s are retried three times, then reported.
    let (backend, mut handle) = mocked(Vec::new());
    let server = tokio::spawn(async move {
        for _ in 0..4 {
            let (_, send) = expect(&mut handle, Method::POST, JOBS).await;
            reply(
                send,
                StatusCode::INTERNAL_SERVER_ERROR,
                &status_body(500, "InternalError"),
            );
        }
        handle
    });
    assert!(matches!(
        backend.create(&"session-new".into()).await,
        Err(BackendError::Unavailable(_))
    ));
    no_more_requests(&mut server.await.unwrap()).await;

    // AlreadyExists means an earlier attempt landed: success.
    let (backend, mut handle) = mocked(Vec::new());
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::POST, JOBS).await;
        reply(send, StatusCode::CONFLICT, &status_body(409, "AlreadyExists"));
        handle
    });
    backend.create(&"session-new".into()).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn claim_relabels_the_pod_under_its_resource_version_then_the_job() {
    let (backend, mut handle) = mocked(vec![warm_pod()]);
    let server = tokio::spawn(async move {
        let (body, send) = expect(&mut handle, Method::PATCH, &format!("{PODS}/session-ab-x1")).await;
        let metadata = &body["metadata"];
        assert_eq!(
            metadata["resourceVersion"], "42",
            "the optimistic-concurrency precondition"
        );
        assert_eq!(metadata["labels"]["assigned"], "true");
        assert_eq!(metadata["labels"]["session-id"], "s1");
        assert!(metadata["annotations"][labels::SESSION_STARTED_ANNOTATION].is_string());
        reply(send, StatusCode::OK, &serde_json::to_value(warm_pod()).unwrap());
        let (job, send) = expect(&mut handle, Method::PATCH, &format!("{JOBS}/session-ab")).await;
        assert_eq!(job["metadata"]["labels"]["session-id"], "s1");
        let deadline = job["spec"]["activeDeadlineSeconds"].as_u64().unwrap();
        assert!(deadline >= 3600, "{deadline}");
        reply(send, StatusCode::OK, &json!({"metadata": {"name": "session-ab"}}));
        handle
    });
    backend.claim(&"session-ab".into(), &"s1".into()).await.unwrap();
    no_more_requests(&mut server.await.unwrap()).await;
}

#[tokio::test]
async fn a_lost_claim_race_is_a_conflict_and_touches_nothing_else() {
    let (backend, mut handle) = mocked(vec![warm_pod()]);
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, Method::PATCH, &format!("{PODS}/session-ab-x1")).await;
        reply(send, StatusCode::CONFLICT, &status_body(409, "Conflict"));
        handle
    });
    assert!(matches!(
        backend.claim(&"session-ab".into(), &"s1".into()).await,
        Err(BackendError::Conflict(name)) if name == "session-ab"
    ));
    // Not retried, and the Job is left alone.
    no_more_requests(&mut server.await.unwrap()).await;

    // A pod the cache already shows as claimed is refused without asking the API server.
    let mut claimed = warm_pod();
    claimed
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("assigned".into(), "true".into());
    let (backend, mut handle) = mocked(vec![claimed]);
    assert!(matches!(
        backend.claim(&"session-ab".into(), &"s1".into()).await,
        Err(BackendError::Conflict(_))
    ));
    assert!(matches!(
        backend.claim(&"session-zz".into(), &"s1".into()).await,
        Err(BackendError::NotFound(_))
    ));
    no_more_requests(&mut handle).await;
}

#[tokio::test]
async fn trimming_deletes_only_the_unclaimed_version_of_a_pod() {
    let (backend, mut handle) = mocked(vec![warm_pod()]);
    let server = tokio::spawn(async move {
        let (body, send) = expect(&mut handle, Method::DELETE, &format!("{PODS}/session-ab-x1")).await;
        assert_eq!(body["preconditions"]["resourceVersion"], "42");
        assert_eq!(body["preconditions"]["uid"], "u-1");
        reply(send, StatusCode::CONFLICT, &status_body(409, "Conflict"));
        handle
    });
    assert!(matches!(
        backend.retire(&"session-ab".into()).await,
        Err(BackendError::Conflict(_))
    ));
    no_more_requests(&mut server.await.unwrap()).await;
}

#[tokio::test]
async fn terminating_deletes_the_pod_then_the_job_and_gone_is_fine() {
    let (backend, mut handle) = mocked(vec![warm_pod()]);
    let server = tokio::spawn(async move {
        let (body, send) = expect(&mut handle, Method::DELETE, &format!("{PODS}/session-ab-x1")).await;
        assert!(body.get("preconditions").is_none_or(Value::is_null));
        reply(send, StatusCode::OK, &serde_json::to_value(warm_pod()).unwrap());
        let (body, send) = expect(&mut handle, Method::DELETE, &format!("{JOBS}/session-ab")).await;
        assert_eq!(body["propagationPolicy"], "Background");
        reply(send, StatusCode::NOT_FOUND, &status_body(404, "NotFound"));
        handle
    });
    backend.terminate(&"session-ab".into()).await.unwrap();
    no_more_requests(&mut server.await.unwrap()).await;
}

#[tokio::test]
async fn the_websocket_url_is_a_signed_route_to_the_pod_through_the_edge() {
    let (backend, _handle) = mocked(vec![warm_pod()]);
    let url = backend.websocket_url(&"session-ab".into(), &"s1".into()).unwrap();
    let token = url.strip_prefix("wss://edge.test/ws/session/s1?token=").unwrap();
    let claims = settings().key.verify_route(token, "s1", 0).unwrap();
    assert_eq!(claims.addr, "10.0.0.9:8080");
    assert_eq!(claims.pod, "session-ab");
    assert!(
        backend
            .websocket_url(&"session-zz".into(), &"s1".into())
            .is_none()
    );
}
