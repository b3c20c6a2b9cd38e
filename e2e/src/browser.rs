//! Driving headless Chromium from the end-to-end tests: chromedriver and its browser in a process group of
//! their own (killed as one when dropped), the raw chromedriver commands fantoccini has no method for (DevTools
//! Protocol, the console log), and the small readers every browser test uses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound on starting the browser.
const START: Duration = Duration::from_secs(30);

/// chromedriver and the Chromium it starts, in a process group of their own: dropping this kills the whole group,
/// so a failing test (a panic) leaves no browser behind; killing chromedriver alone orphans Chromium.
pub struct Browser {
    driver: Child,
    /// Chromium's profile directory, this browser's alone; removed with it.
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Starts chromedriver on a port it picks and a headless Chromium session through it (`CHROME_BIN` names
/// another browser binary); the browser dies with the returned guard.
pub async fn start_browser() -> (Browser, Client) {
    start_browser_with(&[]).await
}

/// [`start_browser`] with extra Chromium flags (the real-node test's `--ignore-certificate-errors`, for its
/// ingress's generated certificate).
pub async fn start_browser_with(extra_args: &[&str]) -> (Browser, Client) {
    // Several rustls back-ends are compiled into the workspace; say which one this process uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Port 0: chromedriver picks a free port itself and says which once it listens, so no port is picked in
    // advance for another program to take first.
    let mut driver = Command::new("chromedriver")
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver on PATH (cargo xtask setup installs it)");
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    // One profile per browser: two browsers of one test process must not share (and lock) one.
    static BROWSERS: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "e2e-chromium-{}-{}",
        std::process::id(),
        BROWSERS.fetch_add(1, Ordering::Relaxed)
    ));
    let driver = Browser {
        driver,
        profile: profile.clone(),
    };
    let port: u16 = tokio::time::timeout(START, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, port)) = line.split_once("started successfully on port ") {
                return port.trim_end_matches('.').parse().unwrap();
            }
        }
        panic!("chromedriver exited before listening");
    })
    .await
    .expect("chromedriver did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut options = serde_json::json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
        ]
    });
    if let Some(args) = options["args"].as_array_mut() {
        args.extend(extra_args.iter().map(|a| serde_json::Value::from(*a)));
    }
    // Another Chrome than the distribution's Chromium (CI on Ubuntu installs one and names it here).
    if let Some(binary) = std::env::var_os("CHROME_BIN") {
        options["binary"] = serde_json::Value::String(binary.to_string_lossy().into_owned());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    // The page's console, read back with `console_errors`.
    capabilities.insert(
        "goog:loggingPrefs".into(),
        serde_json::json!({ "browser": "ALL" }),
    );
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver speaks plain HTTP on loopback: no TLS stack (fantoccini's `rustls-tls` would build aws-lc).
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a browser session");
    (driver, client)
}

/// A chromedriver command fantoccini has no method for: `POST /session/{id}/{path}` with a JSON body.
#[derive(Debug)]
pub struct Raw {
    /// The path after `session/{id}/`.
    pub path: &'static str,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl WebDriverCompatibleCommand for Raw {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/{}", session.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// Runs a Chrome DevTools Protocol command through chromedriver; returns its result.
pub async fn cdp(client: &Client, cmd: &str, params: serde_json::Value) -> serde_json::Value {
    client
        .issue_cmd(Raw {
            path: "goog/cdp/execute",
            body: serde_json::json!({ "cmd": cmd, "params": params }),
        })
        .await
        .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
}

/// The console's error entries since the last call (chromedriver hands each entry out once).
pub async fn console_errors(client: &Client) -> Vec<String> {
    let log = client
        .issue_cmd(Raw {
            path: "se/log",
            body: serde_json::json!({ "type": "browser" }),
        })
        .await
        .expect("the browser's log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The text of the first element matching `css` (empty when there is none).
pub async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Runs `script` in the page and returns its JSON value (errors as `null`).
pub async fn js(client: &Client, script: &str) -> serde_json::Value {
    client.execute(script, vec![]).await.unwrap_or_default()
}

/// Polls the page (the only way to watch a browser from outside) until `check` holds or `within` passes.
pub async fn eventually<T>(within: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
