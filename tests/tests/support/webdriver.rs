//! A small W3C WebDriver client over HTTP for the console's browser tests: Debian's `chromedriver`
//! driving headless `chromium` (both installed by `scripts/services --browser`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver` with one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    /// Where downloads land.
    pub downloads: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killed alone, chromedriver leaves its Chromium running for the rest of the test run:
        // end the whole process group it leads (Chromium and its helpers are in it).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Chromium (Debian package chromium; scripts/services --browser installs it)")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, `width` × 1000 px.
    pub async fn start(width: u32) -> Self {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, which its Chromium joins: see `drop`.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/services --browser installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let downloads = std::env::temp_dir().join(format!(
            "console-downloads-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&downloads).unwrap();
        let mut browser = Self {
            driver,
            base: base.clone(),
            http,
            downloads,
        };
        super::eventually("chromedriver to listen", 30, || async {
            browser
                .http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        let session = browser
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium(),
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 format!("--window-size={width},1000"), "--lang=en-US"],
                        "prefs": {
                            "download.default_directory": browser.downloads.display().to_string(),
                            "download.prompt_for_download": false,
                            "intl.accept_languages": "en-US,en",
                        },
                    },
                }}}),
            )
            .await;
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session: {session}"))
            .to_owned();
        browser.base = format!("{base}/session/{id}");
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("chromedriver answers JSON");
        answer.get("value").cloned().unwrap_or(Value::Null)
    }

    /// Opens `url` and waits for the page to load.
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the current URL contains `part` (a navigation finished).
    pub async fn wait_url(&self, part: &str) {
        super::eventually(&format!("a URL with {part}"), 30, || async {
            self.url().await.contains(part).then_some(())
        })
        .await;
    }

    /// The document's title.
    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// The first element matching `css`, waited for up to 30 s.
    pub async fn element(&self, css: &str) -> String {
        super::eventually(&format!("an element {css}"), 30, || self.find(css)).await
    }

    /// Every element matching `css`.
    pub async fn all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
            .collect()
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    /// Clicks the first element matching `css` (a link or a form's button) and waits until the
    /// browser has left the current document, so that what is read next is the new page.
    pub async fn follow(&self, css: &str) {
        let old = self.element("html").await;
        self.click(css).await;
        super::eventually(&format!("a new page after clicking {css}"), 30, || async {
            let answer = self
                .call(
                    reqwest::Method::GET,
                    &format!("/element/{old}/name"),
                    Value::Null,
                )
                .await;
            (answer["error"].as_str() == Some("stale element reference")).then_some(())
        })
        .await;
    }

    /// Types `text` into the first element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The rendered text of an element.
    pub async fn text_of(&self, element: &str) -> String {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.element(css).await;
        self.text_of(&element).await
    }

    /// Waits until the text of `css` satisfies `check`, reloading the page between looks.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(element) = self.find(css).await {
                let text = self.text_of(&element).await;
                if check(&text) {
                    return text;
                }
                if Instant::now() > deadline {
                    panic!("{what}: {css} still reads {text:?}");
                }
            } else if Instant::now() > deadline {
                panic!("{what}: no element {css}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.call(reqwest::Method::POST, "/refresh", json!({}))
                .await;
        }
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The browser's cookies for the current page.
    pub async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", Value::Null)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Saves a PNG of the viewport under `target/console-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}
