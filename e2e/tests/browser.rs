//! The whole local demo in a real browser: Trunk's build of the page served by the real provisioner, real pods,
//! headless Chromium through chromedriver. It must show a pod, plot samples, and heal after "Kill my pod".
//!
//! Needs `dist/` (built by `cargo xtask test`, or set `E2E_DIST`) and `chromedriver` + `chromium` on `PATH`
//! (`cargo xtask setup` installs them). A screenshot is saved to `target/e2e/page.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound on starting things (processes, the browser).
const START: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn dist() -> PathBuf {
    let dist = std::env::var_os("E2E_DIST").map_or_else(|| root().join("dist"), PathBuf::from);
    assert!(
        dist.join("index.html").is_file(),
        "{} has no built site: run `cargo xtask test` (it builds the page with Trunk first)",
        dist.display()
    );
    dist
}

async fn start_provisioner() -> (Child, String) {
    let provisioner = testkit::bin::workspace_binary("provisioner", "provisioner").unwrap();
    let server = testkit::bin::workspace_binary("server", "server").unwrap();
    let mut command = Command::new(provisioner);
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--warm-pool-size", "2"])
        .arg("--server-bin")
        .arg(server)
        .arg("--static-dir")
        .arg(dist());
    let service = testkit::spawn::Service::start(command, "provisioner listening", START)
        .await
        .expect("the provisioner starts");
    (service.child, format!("http://{}/", service.address))
}

/// chromedriver and the Chromium it starts, in a process group of their own: dropping this kills the whole group,
/// so a failing test (a panic) leaves no browser behind; killing chromedriver alone orphans Chromium.
struct Browser {
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

async fn start_browser() -> (Browser, Client) {
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
    let driver = Browser { driver };
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
    let profile = std::env::temp_dir().join(format!("e2e-chromium-{}", std::process::id()));
    let mut options = serde_json::json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
        ]
    });
    // Another Chrome than the distribution's Chromium (CI on Ubuntu installs one and names it here).
    if let Some(binary) = std::env::var_os("CHROME_BIN") {
        options["binary"] = serde_json::Value::String(binary.to_string_lossy().into_owned());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let url = format!("http://127.0.0.1:{port}");
    let client = ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a browser session");
    (driver, client)
}

async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn received(client: &Client) -> u64 {
    match client.find(Locator::Css("#stat-counts")).await {
        Ok(element) => element
            .attr("data-received")
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Polls the page (the only way to watch a browser from outside) until `check` holds or `within` passes.
async fn eventually<T>(within: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
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

#[tokio::test]
async fn live_latency_kill_and_recovery_in_chromium() {
    let (_provisioner, page) = start_provisioner().await;
    let (_driver, client) = start_browser().await;
    client.goto(&page).await.unwrap();

    let first_pod = eventually(Duration::from_secs(15), "a pod name on the page", async || {
        let name = text(&client, "#pod-name").await;
        name.starts_with("session-").then_some(name)
    })
    .await;
    let loaded = Instant::now();
    eventually(Duration::from_secs(10), "5 RTT samples", async || {
        (received(&client).await >= 5).then_some(())
    })
    .await;
    println!("e2e: 5 samples {:?} after the pod appeared", loaded.elapsed());

    // The canvas has a drawing on it: pixels that differ from the background corner, and among them pixels of
    // exactly the sample dots' colour (light or dark theme, `chart::LIGHT`/`DARK`), so the dots themselves are
    // proven drawn (they go through the page's batched canvas backend).
    let counts = client
        .execute(
            "const c = document.getElementById('chart'); const ctx = c.getContext('2d');
             const d = ctx.getImageData(0, 0, c.width, c.height).data;
             let n = 0, dots = 0; for (let i = 0; i < d.length; i += 4) {
               if (d[i] !== d[0] || d[i+1] !== d[1] || d[i+2] !== d[2]) n++;
               if ((d[i] === 37 && d[i+1] === 99 && d[i+2] === 235) || (d[i] === 96 && d[i+1] === 165 && d[i+2] === 250)) dots++; }
             return [n, dots];",
            vec![],
        )
        .await
        .unwrap();
    let count = |i: usize| counts.get(i).and_then(|v| v.as_u64()).unwrap_or(0);
    let (drawn, dots) = (count(0), count(1));
    assert!(drawn > 2_000, "only {drawn} drawn pixels on the canvas");
    assert!(
        dots >= 5,
        "only {dots} pixels of the sample dots' colour on the canvas"
    );

    let before_kill = received(&client).await;
    client
        .find(Locator::Css("#kill"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let killed_at = Instant::now();
    let second_pod = eventually(
        Duration::from_secs(15),
        "a different pod after the kill",
        async || {
            let name = text(&client, "#pod-name").await;
            (name.starts_with("session-") && name != first_pod).then_some(name)
        },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "new samples from the new pod",
        async || (received(&client).await >= before_kill + 2).then_some(()),
    )
    .await;
    println!(
        "e2e: {first_pod} killed, {second_pod} serving {:?} later",
        killed_at.elapsed()
    );

    // The rate control: at 10 Hz, 20 more samples come within 5 s (at the default 1 Hz they would take 20 s).
    client
        .find(Locator::Css("#rate"))
        .await
        .unwrap()
        .select_by_label("10 Hz")
        .await
        .unwrap();
    let before_rate = received(&client).await;
    let faster = Instant::now();
    eventually(Duration::from_secs(5), "20 samples at 10 Hz", async || {
        (received(&client).await >= before_rate + 20).then_some(())
    })
    .await;
    println!("e2e: 20 samples at 10 Hz in {:?}", faster.elapsed());

    let draw_ms = client
        .execute("return window.__chartDrawMs", vec![])
        .await
        .unwrap();
    println!("e2e: last chart redraw in Chromium took {draw_ms} ms");
    // The benchmark workload (an hour of pings, 3,600 samples) through the page's own layout and drawing code,
    // on a canvas the size of the chart: a number for BENCHMARKS.md, not a pass/fail threshold.
    let per_redraw = client
        .execute("return window.wasmBindings.bench_chart_draw(3600, 31)", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap_or(-1.0);
    assert!(
        per_redraw > 0.0,
        "the 3,600-sample draw did not run in Chromium ({per_redraw})"
    );
    println!(
        "e2e: chart layout + draw with 3,600 samples in Chromium: {per_redraw:.2} ms per redraw (median of 31)"
    );
    let screenshot = client.screenshot().await.unwrap();
    let path = root().join("target/e2e/page.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, screenshot).unwrap();
    println!("e2e: screenshot saved to {}", path.display());

    // Leaving the page ends the session (a keepalive DELETE on `pagehide`): the pod is freed at once.
    let pool_url = format!("{page}pool");
    client.goto(&pool_url).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the session's pod freed after leaving the page",
        async || {
            client.goto(&pool_url).await.ok()?;
            let body = text(&client, "body").await;
            let pool: common::api::PoolStatus = serde_json::from_str(&body).ok()?;
            (pool.assigned == 0).then_some(())
        },
    )
    .await;
    client.close().await.unwrap();
}
