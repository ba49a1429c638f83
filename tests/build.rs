//! Tests that restart the machine's PostgreSQL and RabbitMQ or run clusters of their own need
//! root. Built as root, or under CI (`CI=true`, where a test that cannot run must fail rather
//! than pass unseen), they are compiled as ordinary tests; elsewhere they are reported as ignored
//! with the reason (`cfg(privileged)`).

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(privileged)");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=USER");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if root || ci {
        println!("cargo::rustc-cfg=privileged");
    }
}
