//! The running system for black-box tests: a fresh database, a random RabbitMQ prefix, the real
//! `licensing-ingress` and `licensing-processor` binaries, and a client that signs callbacks.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use koogallery::signature::{AccessKey, signed_query};
use licensing_store::testing::TestDatabase;
use licensing_store::{RecordedEvent, Store};
use serde_json::Value;

pub const KEY: &str = "systemTestAccessKey0123456789";
pub const TOKEN: &str = "system-test-token-0123456789";
/// The console's session key in the tests (`LICENSING_CONSOLE_SECRET`).
pub const CONSOLE_KEY: &str = "system-test-console-key-0123456789";
pub const SIM_AK: &str = "AKSIMULATOR000000";
pub mod webdriver;

pub const SIM_SK: &str = "SKSIMULATOR00000000000000000000000000000";

/// A running `koogallery sim`; killed when dropped.
pub struct Simulator {
    pub child: Child,
    pub url: String,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Simulator {
    pub fn start() -> Self {
        let mut child = Command::new(binaries().join("koogallery"))
            .args([
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--ak",
                SIM_AK,
                "--sk",
                SIM_SK,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the simulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("simulator ready line: {line}"));
        let url = format!("http://{}", ready["listen"].as_str().unwrap());
        Self { child, url }
    }

    pub async fn put(&self, license: &str, state: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/admin/licenses/{license}", self.url))
            .json(&serde_json::json!({"state": state, "expire_time": "20301231235959", "order_id": "CS7001", "product_id": "OFFI7"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub async fn fault(&self, fault: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/admin/faults", self.url))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub async fn requests(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("{}/admin/requests", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the service binaries once per test process and returns their directory, or returns
/// `LICENSING_TEST_BINARIES` when set (the release build of `scripts/chaos`).
pub fn binaries() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("LICENSING_TEST_BINARIES") {
                return PathBuf::from(dir);
            }
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "licensing-ingress",
                    "-p",
                    "licensing-processor",
                    "-p",
                    "licensing-projector",
                    "-p",
                    "koogallery-cli",
                ])
                .current_dir(workspace())
                .status()
                .expect("cargo build runs");
            assert!(status.success(), "building the services failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"));
            target.join("debug")
        })
        .clone()
}

/// A running service; killed when dropped.
pub struct Service {
    pub child: Child,
    pub ready: Value,
    /// What it wrote to standard error (panics land there).
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// What it wrote to standard output (its logs).
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts `binary` with `env`, and waits for its "ready" log line.
    pub fn start(binary: &str, env: &[(String, String)]) -> Self {
        let mut command = Command::new(binaries().join(binary));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LICENSING_LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the service starts");
        let stderr_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let lines = stderr_lines.clone();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = stdout_lines.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                if !sent {
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        if value["message"]
                            .as_str()
                            .is_some_and(|m| m.ends_with(" ready"))
                        {
                            let _ = tx.send(value);
                            sent = true;
                        }
                    }
                }
                if std::env::var_os("SYSTEM_TEST_LOGS").is_some() {
                    eprintln!("{line}");
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{binary} did not log ready within 60 s"));
        Self {
            child,
            ready,
            stderr: stderr_lines,
            stdout: stdout_lines,
        }
    }

    /// Every line it wrote so far that contains `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        let out = self.stdout.lock().unwrap();
        let err = self.stderr.lock().unwrap();
        out.iter()
            .chain(err.iter())
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Lines of standard error that report a panic.
    pub fn panics(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("panicked"))
            .cloned()
            .collect()
    }

    /// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `seconds`.
    pub fn wait_exit(&mut self, seconds: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {seconds} s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The whole pipeline on its own database and RabbitMQ prefix.
pub struct Stack {
    pub db: TestDatabase,
    pub store: Store,
    pub prefix: String,
    pub env: Vec<(String, String)>,
    pub ingress: Option<Service>,
    pub processor: Option<Service>,
    pub projector: Option<Service>,
    pub http: reqwest::Client,
}

pub fn amqp_url() -> String {
    std::env::var("LICENSING_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

impl Stack {
    /// Starts both services with the default settings plus `extra`.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let db = TestDatabase::create().await;
        let prefix = format!("systest-{}.", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = [
            ("LICENSING_DATABASE_URL", db.url.as_str()),
            ("LICENSING_AMQP_URL", &amqp_url()),
            ("LICENSING_AMQP_PREFIX", &prefix),
            ("LICENSING_AMQP_QUEUE_TYPE", "classic"),
            ("LICENSING_CALLBACK_KEYS", KEY),
            ("LICENSING_API_TOKENS", TOKEN),
            ("LICENSING_INGRESS_ADDR", "127.0.0.1:0"),
            ("LICENSING_INTERNAL_ADDR", "127.0.0.1:0"),
            ("LICENSING_PROCESSOR_ADDR", "127.0.0.1:0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let store = db.store();
        let mut stack = Self {
            db,
            store,
            prefix,
            env,
            ingress: None,
            processor: None,
            projector: None,
            http: reqwest::Client::new(),
        };
        stack.start_processor();
        stack.start_ingress();
        stack.wait_ingress_ready().await;
        stack
    }

    pub fn start_processor(&mut self) {
        self.processor = Some(Service::start("licensing-processor", &self.env));
    }

    /// Starts the projector, calling the marketplace at `marketplace_url` with the simulator's AK/SK.
    pub fn start_projector(&mut self, marketplace_url: &str) {
        self.start_projector_with(marketplace_url, &[]);
    }

    /// Starts the projector with extra settings.
    pub fn start_projector_with(&mut self, marketplace_url: &str, extra: &[(&str, &str)]) {
        let env = self.projector_env(marketplace_url, extra);
        self.projector = Some(Service::start("licensing-projector", &env));
    }

    /// A projector's settings: the stack's, the simulator at `marketplace_url`, and `extra`.
    pub fn projector_env(
        &self,
        marketplace_url: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(
            [
                ("LICENSING_KOOGALLERY_URL", marketplace_url),
                ("LICENSING_KOOGALLERY_AK", SIM_AK),
                ("LICENSING_KOOGALLERY_SK", SIM_SK),
                ("LICENSING_QUERY_ADDR", "127.0.0.1:0"),
                ("LICENSING_CONSOLE_SECRET", CONSOLE_KEY),
                ("LICENSING_OUTBOUND_RETRY_BASE_MS", "200"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    pub fn query_url(&self, path: &str) -> String {
        let ready = &self.projector.as_ref().expect("the projector runs").ready;
        format!("http://{}{path}", ready["query"].as_str().unwrap())
    }

    pub fn start_ingress(&mut self) {
        self.ingress = Some(Service::start("licensing-ingress", &self.env));
    }

    fn ingress_ready(&self, field: &str) -> String {
        let ready = &self.ingress.as_ref().expect("the ingress runs").ready;
        ready[field]
            .as_str()
            .unwrap_or_else(|| panic!("ready event has {field}: {ready}"))
            .to_owned()
    }

    /// The public listener's address, `host:port`.
    pub fn public_addr(&self) -> String {
        self.ingress_ready("public")
    }

    /// Outbound jobs of a license still owed.
    pub async fn outbound_jobs(&self, license: &str) -> i64 {
        let client = self.store.client().await.unwrap();
        client
            .query_one(
                "SELECT count(*) FROM outbound_jobs WHERE license = $1",
                &[&license],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub fn callback_url(&self) -> String {
        format!("http://{}/koogallery/license", self.ingress_ready("public"))
    }

    /// Runs one of the service binaries as a command-line tool on the stack's database, with only
    /// `env` besides; returns its exit code and its standard output and error together.
    pub fn tool(&self, binary: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let output = std::process::Command::new(binaries().join(binary))
            .args(args)
            .env_clear()
            .env("LICENSING_DATABASE_URL", &self.db.url)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// Asks for a code's activation on the internal API; the HTTP status.
    pub async fn request_activation(&self, license: &str) -> u16 {
        self.http
            .post(self.internal_url(&format!("/v1/licenses/{license}/activation")))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingress_ready("internal"))
    }

    /// Waits until the ingress is connected to the broker.
    pub async fn wait_ingress_ready(&self) {
        let url = self.internal_url("/readyz");
        eventually("the ingress to be ready", 30, || async {
            let response = self.http.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// Signs and posts a callback body; returns the JSON answer (and checks HTTP 200, D1).
    pub async fn callback(&self, body: &str) -> Value {
        self.callback_signed(body, &fresh_query(KEY, body), "application/json")
            .await
    }

    /// Posts a body with a given query string and Content-Type.
    pub async fn callback_signed(&self, body: &str, query: &str, content_type: &str) -> Value {
        let response = self
            .http
            .post(format!("{}?{query}", self.callback_url()))
            .header("Content-Type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("the ingress answers");
        assert_eq!(
            response.status(),
            200,
            "callbacks are always answered with HTTP 200"
        );
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "application/json;charset=UTF-8");
        response.json().await.unwrap()
    }

    /// A gauge's value on the projector's `/metrics` (unlabelled metrics only).
    pub async fn projector_gauge(&self, name: &str) -> Option<f64> {
        let metrics = self
            .http
            .get(self.query_url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// Appends to `stream` an event this build cannot read (as if written by a later release):
    /// commands for that license are dead-lettered.
    pub async fn make_unreadable(&self, stream: &str) {
        let unreadable = licensing_store::NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "written_by_a_later_release".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: licensing_store::EventMetadata::default(),
        };
        self.store
            .append(stream, 0, vec![unreadable])
            .await
            .unwrap();
    }

    /// Waits until the processor's keeper has recorded a dead letter that `matches`.
    pub async fn wait_dead_letter(
        &self,
        matches: impl Fn(&licensing_store::StoredDeadLetter) -> bool,
    ) -> licensing_store::StoredDeadLetter {
        eventually("a dead letter to be recorded", 30, || async {
            self.store
                .dead_letters(licensing_store::DeadLetterState::All, None, 100)
                .await
                .ok()?
                .into_iter()
                .find(&matches)
        })
        .await
    }

    /// All events of a stream.
    pub async fn events(&self, stream: &str) -> Vec<RecordedEvent> {
        self.store.load(stream).await.unwrap()
    }

    /// The event types of a stream.
    pub async fn event_types(&self, stream: &str) -> Vec<String> {
        self.events(stream)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Waits (30 s at most) until the stream holds an event of `event_type`.
    pub async fn wait_event(&self, stream: &str, event_type: &str) {
        eventually(&format!("a {event_type} event in {stream}"), 30, || async {
            self.event_types(stream)
                .await
                .iter()
                .any(|t| t == event_type)
                .then_some(())
        })
        .await;
    }

    /// Fails when any running service wrote one of `secrets` to its logs.
    pub fn assert_logs_hold_none_of(&self, secrets: &[&str]) {
        for service in [&self.ingress, &self.processor, &self.projector]
            .into_iter()
            .flatten()
        {
            for secret in secrets {
                let leaks = service.logged(secret);
                assert!(leaks.is_empty(), "a secret in the logs: {leaks:?}");
            }
        }
    }

    /// Every license view as a JSON row, in a stable order (empty before the projector made its
    /// table).
    pub async fn views_snapshot(&self) -> Vec<String> {
        let client = self.store.client().await.unwrap();
        client
            .query(
                "SELECT row_to_json(v)::text FROM license_views v ORDER BY license, sandbox",
                &[],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default()
    }

    /// Whether the projector's view follower and event publisher have handled every event.
    pub async fn projector_caught_up(&self) -> bool {
        let client = self.store.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT (SELECT coalesce(max(global_position), 0) FROM events),
                        (SELECT coalesce(min(position), 0) FROM checkpoints
                          WHERE name IN ('license_views', 'event_publisher')),
                        (SELECT count(*) FROM checkpoints
                          WHERE name IN ('license_views', 'event_publisher'))",
                &[],
            )
            .await
            .unwrap();
        let (last, slowest, followers): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        followers == 2 && slowest == last
    }

    /// Waits until the projector has handled every event and owes `license` no call: no call for
    /// it is in flight or can still be made, so the marketplace's requests are final.
    pub async fn outbound_settled(&self, license: &str) {
        eventually(
            &format!("no outbound call owed for {license}"),
            30,
            || async {
                (self.projector_caught_up().await && self.outbound_jobs(license).await == 0)
                    .then_some(())
            },
        )
        .await;
    }

    /// Runs `licensing-projector rebuild` on this stack's database; returns its standard output.
    pub fn rebuild_views(&self) -> String {
        let output = Command::new(binaries().join("licensing-projector"))
            .arg("rebuild")
            .env("LICENSING_DATABASE_URL", &self.db.url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The number of events in the store.
    pub async fn event_count(&self) -> i64 {
        let client = self.store.client().await.unwrap();
        client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for Stack {
    /// Stops the services, then removes this stack's exchanges and queues from RabbitMQ. A service
    /// that panicked fails the test, even when the system kept working around it.
    fn drop(&mut self) {
        let panics: Vec<String> = [&self.ingress, &self.processor, &self.projector]
            .into_iter()
            .flatten()
            .flat_map(Service::panics)
            .collect();
        self.ingress = None;
        self.processor = None;
        self.projector = None;
        let mut config = licensing_bus::BusConfig::new(amqp_url());
        config.prefix = self.prefix.clone();
        config.queue_type = licensing_bus::QueueType::Classic;
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let bus = licensing_bus::Bus::connect(config).await.ok()?;
                bus.delete_topology().await.ok()?;
                bus.close().await;
                Some(())
            })
        });
        let _ = cleanup.join();
        if !std::thread::panicking() {
            assert!(panics.is_empty(), "a service panicked: {panics:?}");
        }
    }
}

/// A port free right now.
/// The projector's clock: the system's moved by the seconds in a file.
pub struct TestClock(PathBuf);

impl TestClock {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("clock-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, "0").unwrap();
        Self(path)
    }

    pub fn set(&self, seconds: i64) {
        std::fs::write(&self.0, seconds.to_string()).unwrap();
    }

    pub fn setting(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TestClock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A form body, `application/x-www-form-urlencoded`.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the hidden `csrf` field of a page.
pub fn csrf_in(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF field")
        + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// `name=value` of a `Set-Cookie` header named `name`, and the whole header.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// Signs in to the operator console at `query` (`http://host:port`) with `token`: the session
/// cookie (`licensing_console=…`).
pub async fn console_session(query: &str, token: &str) -> String {
    let signed_in = console_sign_in(query, token).await;
    set_cookie(&signed_in, "licensing_console")
        .expect("a session cookie")
        .0
}

/// The console's answer to signing in with `token` through its form (redirects not followed).
pub async fn console_sign_in(query: &str, token: &str) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .get(format!("{query}/console/sign-in"))
        .send()
        .await
        .unwrap();
    let (nonce, _) = set_cookie(&form, "licensing_console_sign_in").expect("a form cookie");
    let csrf = csrf_in(&form.text().await.unwrap());
    http.post(format!("{query}/console/sign-in"))
        .header("Cookie", nonce)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&[("token", token), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap()
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

/// Events `from..from + count` of a license's stream, as the processor stores them: registered
/// first, then renewals (the benchmarks' synthetic histories).
pub fn events_of(license: &str, from: usize, count: usize) -> Vec<licensing_store::NewEvent> {
    use licensing_domain::{
        Event, LicenseCode, MarketTime, Origin, Registered, Renewed, Scene, Timestamp,
    };
    (from..from + count)
        .map(|i| {
            let at = Timestamp::from_millis(1_800_000_000_000 + i as i64 * 1000);
            let event = if i == 0 {
                Event::Registered(Registered {
                    license: LicenseCode::parse(license).unwrap(),
                    sandbox: false,
                    origin: Origin::Callback,
                    at,
                })
            } else {
                let expire = 1_900_000_000_000 + i as i64 * 86_400_000;
                Event::Renewed(Renewed {
                    order_id: format!("CSV{i}"),
                    order_line_id: format!("CSV{i}-1"),
                    scene: Scene::Renewal,
                    product_id: None,
                    expire: MarketTime {
                        instant: Timestamp::from_millis(expire),
                        raw: format!("{:014}", 20300101000000u64 + i as u64),
                    },
                    at,
                })
            };
            let (event_type, payload) = licensing_messages::event_codec::encode(&event);
            licensing_store::NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type,
                schema_version: 1,
                payload,
                metadata: licensing_store::EventMetadata::default(),
            }
        })
        .collect()
}

/// A port free now, below the range the kernel picks from for `bind(…:0)`: the services of every
/// other test bind port 0, so none of them can be handed this port while a test keeps it closed or
/// restarts a service on it.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, span) = (10_000u16, low.saturating_sub(10_000).max(1000));
    for _ in 0..1000 {
        let port = from + (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {from} and {}", from + span)
}

/// Runs schemathesis (installed by `scripts/test`) with every check against the API at `base`,
/// driven by `docs/openapi.json`, with the operations chosen by `filters`; fails with its report.
pub fn schemathesis(base: &str, filters: &[&str]) {
    let document = workspace().join("docs/openapi.json");
    let output = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run", document.to_str().unwrap()])
        .args(["--url", base, "--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(filters)
        .args([
            "--max-examples",
            "30",
            "--workers",
            "2",
            "--no-color",
            "--seed",
            "1",
            "--generation-database",
            "none",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Posts a callback `body` to `url` once, signed now as the marketplace signs it, waiting at most
/// `limit`: the answer's `resultCode` (`no JSON` without one) or the transport's error, and how
/// long it took.
pub async fn post_callback(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    limit: Duration,
) -> (Result<String, reqwest::Error>, Duration) {
    let started = Instant::now();
    let answer = http
        .post(format!("{url}?{}", fresh_query(KEY, body)))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .timeout(limit)
        .send()
        .await;
    let code = match answer {
        Ok(response) => Ok(
            response.json::<Value>().await.unwrap_or(Value::Null)["resultCode"]
                .as_str()
                .unwrap_or("no JSON")
                .to_owned(),
        ),
        Err(e) => Err(e),
    };
    (code, started.elapsed())
}

/// A query string signed now with a fresh nonce.
pub fn fresh_query(key: &str, body: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    signed_query(
        &AccessKey::new(key),
        &uuid::Uuid::new_v4().simple().to_string(),
        &now,
        body.as_bytes(),
    )
}

/// A query string signed with a given timestamp.
pub fn query_at(key: &str, body: &str, timestamp_ms: i64) -> String {
    signed_query(
        &AccessKey::new(key),
        &uuid::Uuid::new_v4().simple().to_string(),
        &timestamp_ms.to_string(),
        body.as_bytes(),
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn renew(license: &str, order: &str, expire: &str, test: bool) -> String {
    format!(
        r#"{{"activity":"refreshLicenseCode","expireTime":"{expire}","license":"{license}","orderId":"{order}","orderLineId":"{order}-000001","scene":"RENEWAL","testFlag":"{}"}}"#,
        if test { 1 } else { 0 }
    )
}

pub fn status(license: &str, status: &str) -> String {
    format!(
        r#"{{"activity":"updateLicenseCodeStatus","license":"{license}","status":"{status}","testFlag":"0"}}"#
    )
}

pub fn release(license: &str) -> String {
    format!(
        r#"{{"activity":"releaseLicenseCode","license":"{license}","orderId":"CSUNSUB","orderLineId":"CSUNSUB-1","testFlag":"0"}}"#
    )
}

pub fn code(answer: &Value) -> &str {
    answer["resultCode"]
        .as_str()
        .unwrap_or_else(|| panic!("no resultCode in {answer}"))
}

/// Polls `check` until it returns `Some`, failing with `what` after `seconds`.
pub async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An Ed25519 key as sellers make one: `openssl genpkey -algorithm ed25519`.
pub fn openssl_key(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&path)
        .status()
        .expect("the openssl command (Debian package openssl)");
    assert!(status.success());
    path
}

/// The messages of `stream` (each acknowledged, as JSON) until `until_count` arrived, or until none
/// came for 20 s.
pub async fn drain(stream: &mut licensing_bus::IncomingStream, until_count: usize) -> Vec<Value> {
    let mut received = Vec::new();
    while received.len() < until_count {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next()).await;
        let Ok(Some(Ok(message))) = next else { break };
        message.ack().await.unwrap();
        received.push(serde_json::from_slice::<Value>(&message.body).unwrap());
    }
    received
}

/// A TCP relay to `upstream` that can go silent: paused, it holds every byte in both directions
/// and keeps the connections open, as a network that drops a host's packets would look to both
/// ends; resumed, it forwards what it held.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    paused: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (paused, _) = tokio::sync::watch::channel(false);
        let gate = paused.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, gate.subscribe()));
                tokio::spawn(pump(server_read, client_write, gate.subscribe()));
            }
        });
        Self { addr, paused, task }
    }

    /// Holds every byte from now on.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Forwards again, what was held first.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buffer).await.unwrap_or(0);
        // An end of stream is held like data: silence hides it too.
        if paused.wait_for(|p| !p).await.is_err() || read == 0 {
            break;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A small deterministic generator (splitmix64): the same seed gives the same run (the chaos and
/// attack loops).
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number from `low` to `high`, both included.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Builds the example `name` (a loop driver) and runs it with `args` and a seed (`seed_var` when
/// set, else the clock); returns its standard output when its verdict line says `PASS`, and
/// panics otherwise with the verdict and the loop's own standard error (services' JSON log lines
/// left out; all of it kept in `$TMPDIR/NAME-SEED.stderr`).
pub fn run_loop(name: &str, args: &[&str], seed_var: &str) -> String {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "system-tests", "--example", name])
        .current_dir(workspace)
        .status()
        .unwrap();
    assert!(status.success(), "building the {name} loop failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let seed = std::env::var(seed_var).unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string()
    });
    let output = Command::new(target.join("debug/examples").join(name))
        .args(args)
        .arg(&seed)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let verdict: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{name}:")) || l.starts_with("  violation"))
        .collect();
    eprintln!("{}", verdict.join("\n"));
    if !(output.status.success() && stdout.contains(&format!("{name}: PASS"))) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let kept = std::env::temp_dir().join(format!("{name}-{seed}.stderr"));
        let _ = std::fs::write(&kept, stderr.as_bytes());
        let own: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
        let tail = &own[own.len().saturating_sub(40)..];
        panic!(
            "the {name} loop failed (seed {seed}, {}):\n{}\n--- its own standard error (last {} lines; all of it in {}):\n{}",
            output.status,
            verdict.join("\n"),
            tail.len(),
            kept.display(),
            tail.join("\n")
        );
    }
    stdout
}
