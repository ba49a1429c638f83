//! Two minutes of the chaos loop (`tests/examples/chaos.rs`, `scripts/chaos` for longer runs):
//! every service killed and restarted, RabbitMQ stopped and started, PostgreSQL restarted, under
//! load; nothing lost, nothing doubled. In a test binary of its own, so that no other test shares
//! the machine's PostgreSQL and RabbitMQ while they are restarted.

mod support;

use std::process::Command;

use support::run_loop;

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
    let stdout = run_loop("chaos", &["2"], "CHAOS_SEED");
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
