//! One minute of the attack loop (`tests/examples/attack.rs`, `scripts/attack` for longer runs):
//! a signed load while attackers send pathological bodies, rewritten replays, oversized headers,
//! slow bodies and forwarded floods; every signed request answered in time and applied once,
//! nothing of the attacker's in a genuine ledger, refusals within their ceiling, memory bounded.
//! In a test binary of its own, so that no other test shares the machine's two cores with it.

use std::process::Command;

#[test]
fn a_minute_of_attack_leaves_the_signed_load_untouched() {
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
            "attack",
        ])
        .current_dir(workspace)
        .status()
        .unwrap();
    assert!(status.success(), "building the attack loop failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let seed = std::env::var("ATTACK_SEED").unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string()
    });
    let output = Command::new(target.join("debug/examples/attack"))
        .args(["60", &seed])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    if !(output.status.success() && stdout.contains("attack: PASS")) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let own: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
        panic!(
            "the attack loop failed (seed {seed}, {}):\n{stdout}\n--- its own standard error:\n{}",
            output.status,
            own[own.len().saturating_sub(40)..].join("\n")
        );
    }
}
