//! Headless Chromium driven over WebDriver (fantoccini -> chromedriver), for the web UI's
//! end-to-end tests. Screenshots go to `target/test-artifacts/<test>/<name>.png`.
//!
//! A missing Chromium or chromedriver fails the test with what to install: a browser test
//! that skips silently would pass on exactly the machines where nobody looked.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// Debian's `chromium` and `chromium-driver`; `PBXLINK_CHROMIUM` / `PBXLINK_CHROMEDRIVER`
/// point elsewhere.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long `wait_for` waits for the page before failing the test.
const WAIT: Duration = Duration::from_secs(30);

/// A Chromium session; chromedriver (and with it Chromium) is killed when this is dropped,
/// so a failing test leaves no browser behind.
pub struct Browser {
    client: Client,
    driver: Child,
    artifacts: PathBuf,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("artifacts", &self.artifacts)
            .finish_non_exhaustive()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver runs in its own process group with its Chromium: end them together.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn installed(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: the browser tests need Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver; scripts/test installs them), or {var}",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh headless Chromium profile; `test`
    /// names the screenshot folder.
    pub async fn start(test: &str) -> Browser {
        let chromium = installed("PBXLINK_CHROMIUM", CHROMIUM);
        let chromedriver = installed("PBXLINK_CHROMEDRIVER", CHROMEDRIVER);
        let mut driver = Command::new(&chromedriver)
            .arg("--port=0")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        // "ChromeDriver was started successfully on port N."
        let mut out = BufReader::new(driver.stdout.take().unwrap()).lines();
        let port = out
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let rest = line.split("started successfully on port ").nth(1)?;
                rest.trim_end_matches('.').parse::<u16>().ok()
            })
            .expect("chromedriver did not say which port it listens on");
        std::thread::spawn(move || out.for_each(drop));
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is inside the target dir")
            .join("test-artifacts")
            .join(test);
        std::fs::create_dir_all(&artifacts).unwrap();
        Browser {
            client,
            driver,
            artifacts,
            _profile: profile,
        }
    }

    /// The WebDriver session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Saves a PNG of the viewport as `<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The first element matching `css`, once it is on the page and visible.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_until(css, |shown| shown)
            .await
            .unwrap_or_else(|| panic!("no visible {css:?} within {WAIT:?}"))
    }

    /// Waits until nothing matching `css` is visible.
    pub async fn wait_gone(&self, css: &str) {
        self.wait_until(css, |shown| !shown).await;
    }

    /// Polls until `want(visible)` holds for `css` (fails the test, with a screenshot, after
    /// [`WAIT`]); the element when it is visible.
    async fn wait_until(&self, css: &str, want: impl Fn(bool) -> bool) -> Option<Element> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = match self.client.find(Locator::Css(css)).await {
                Ok(e) if e.is_displayed().await.unwrap_or(false) => Some(e),
                _ => None,
            };
            if want(found.is_some()) {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!("waited {WAIT:?} for {css:?} (screenshot: timeout.png)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the WebDriver session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
