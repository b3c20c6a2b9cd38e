//! Calls to the provisioner (gloo-net `fetch`), each turned into a typed answer or a [`Failure`].

use common::api::{CreateSessionResponse, ErrorBody, InfoBody, KillResponse, PoolStatus, SessionStatus};
use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::session::Failure;

/// The provisioner at `base`.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    base: String,
}

impl Api {
    /// An API client for a base URL such as `https://demo.example.com`.
    pub fn new(base: String) -> Self {
        Self { base }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /session`.
    pub async fn create_session(&self) -> Result<CreateSessionResponse, Failure> {
        let request = Request::post(&self.url("/session")).header("content-type", "application/json");
        let request = request
            .body(r#"{"client":"web"}"#)
            .map_err(|e| Failure::Other(e.to_string()))?;
        expect(request.send().await, 201).await
    }

    /// `GET /session/{id}`.
    pub async fn session(&self, id: &str, token: &str) -> Result<SessionStatus, Failure> {
        let request = authorized(Request::get(&self.url(&format!("/session/{id}"))), token);
        expect(request.send().await, 200).await
    }

    /// `POST /session/{id}/kill`.
    pub async fn kill(&self, id: &str, token: &str) -> Result<KillResponse, Failure> {
        let request = authorized(Request::post(&self.url(&format!("/session/{id}/kill"))), token);
        expect(request.send().await, 202).await
    }

    /// `DELETE /session/{id}` (best effort: the page is leaving).
    pub async fn end(&self, id: &str, token: &str) {
        let _ = authorized(Request::delete(&self.url(&format!("/session/{id}"))), token)
            .send()
            .await;
    }

    /// `DELETE /session/{id}` that survives the page going away (`fetch` with `keepalive`), for `pagehide`.
    pub fn end_on_leave(&self, id: &str, token: &str) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let init = web_sys::RequestInit::new();
        init.set_method("DELETE");
        // web-sys has no setter for `keepalive`; it is a plain property of the init dictionary.
        let _ = js_sys::Reflect::set(&init, &"keepalive".into(), &true.into());
        if let Ok(headers) = web_sys::Headers::new()
            && headers.set("authorization", &format!("Bearer {token}")).is_ok()
        {
            init.set_headers(&headers);
            // Fire and forget: the page is leaving and cannot wait for the answer.
            let _ = window.fetch_with_str_and_init(&self.url(&format!("/session/{id}")), &init);
        }
    }

    /// `GET /info`: where the shared servers are.
    pub async fn info(&self) -> Result<InfoBody, Failure> {
        expect(Request::get(&self.url("/info")).send().await, 200).await
    }

    /// `GET /pool`.
    pub async fn pool(&self) -> Result<PoolStatus, Failure> {
        expect(Request::get(&self.url("/pool")).send().await, 200).await
    }
}

fn authorized(request: RequestBuilder, token: &str) -> RequestBuilder {
    request.header("authorization", &format!("Bearer {token}"))
}

async fn expect<T: DeserializeOwned>(
    response: Result<Response, gloo_net::Error>,
    status: u16,
) -> Result<T, Failure> {
    let response = response.map_err(|_| Failure::Unreachable)?;
    if response.status() == status {
        let text = response.text().await.map_err(|_| Failure::Unreachable)?;
        return crate::json::parse(&text).map_err(|e| Failure::Other(format!("unexpected answer: {e}")));
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.trim().parse().ok());
    let body = match response.text().await {
        Ok(text) => crate::json::parse::<ErrorBody>(&text).ok(),
        Err(_) => None,
    };
    Err(Failure::from_http(Some(response.status()), retry_after, body))
}
