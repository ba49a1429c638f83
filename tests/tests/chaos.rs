//! Two minutes of the chaos loop (`tests/examples/chaos.rs`, `scripts/chaos` for longer runs):
//! every service killed and restarted, RabbitMQ stopped and started, PostgreSQL restarted, under
//! load; nothing lost, nothing doubled. In a test binary of its own, so that no other test shares
//! the machine's PostgreSQL and RabbitMQ while they are restarted.

use std::process::Command;

#[test]
#[cfg_attr(
    not(privileged),
    ignore = "needs root: the chaos loop restarts PostgreSQL and RabbitMQ"
)]
fn two_minutes_of_chaos_lose_nothing_and_double_nothing() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "the chaos loop restarts PostgreSQL and RabbitMQ, which needs root"
    );
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "system-tests",
            "--example",
            "chaos",
        ])
        .current_dir(workspace)
        .status()
        .unwrap();
    assert!(status.success(), "building the chaos loop failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let seed = std::env::var("CHAOS_SEED").unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string()
    });
    let output = Command::new(target.join("debug/examples/chaos"))
        .args(["2", &seed])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("chaos:") || l.starts_with("  violation"))
        .collect();
    eprintln!("{}", verdict.join("\n"));
    if !(output.status.success() && stdout.contains("chaos: PASS")) {
        // The loop's own lines, and what is not a service's log line: a panic of the loop
        // itself, with the lines around it. The rest of standard error goes to a file to read.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let kept = std::env::temp_dir().join(format!("chaos-{seed}.stderr"));
        let _ = std::fs::write(&kept, stderr.as_bytes());
        let own: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
        let tail = &own[own.len().saturating_sub(40)..];
        panic!(
            "the chaos loop failed (seed {seed}, {}):\n{}\n--- its own standard error (last {} lines; all of it in {}):\n{}",
            output.status,
            verdict.join("\n"),
            tail.len(),
            kept.display(),
            tail.join("\n")
        );
    }
    // Every kind of fault happened at least once.
    for fault in [
        "KillIngress",
        "KillProcessor",
        "KillProjector",
        "RestartBroker",
        "RestartPostgres",
    ] {
        assert!(
            stdout.contains(&format!("{fault}=")),
            "{fault} injected: {stdout}"
        );
    }
}
