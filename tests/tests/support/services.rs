//! The service binaries: built once per test process, run as child processes.

use super::*;

pub fn workspace() -> PathBuf {
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
    /// The binary's name, to tell whose log lines are shown when a test fails.
    pub binary: String,
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
        if std::thread::panicking() {
            self.show_trouble();
        }
    }
}

/// How many of a service's warnings and errors a failing test shows, the latest kept.
const TROUBLE_SHOWN: usize = 200;

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
            binary: binary.to_owned(),
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

    /// Prints (to the test's captured output, shown when it fails) the service's log lines at
    /// WARN or ERROR, the latest [`TROUBLE_SHOWN`] of them: what it said it could not do.
    fn show_trouble(&self) {
        let out = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
        let trouble: Vec<&String> = out
            .iter()
            .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#))
            .collect();
        let skipped = trouble.len().saturating_sub(TROUBLE_SHOWN);
        eprintln!(
            "--- {} (pid {}): {} warnings and errors{} ---",
            self.binary,
            self.child.id(),
            trouble.len(),
            if skipped > 0 {
                format!(", the last {TROUBLE_SHOWN}")
            } else {
                String::new()
            }
        );
        for line in &trouble[skipped..] {
            eprintln!("{line}");
        }
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

pub fn amqp_url() -> String {
    std::env::var("LICENSING_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}
