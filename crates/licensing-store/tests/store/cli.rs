//! The `licensing-store` command: migrate and status against a real database.

use std::process::Command;

use licensing_store::testing::TestDatabase;

use crate::event;

fn run(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_licensing-store"))
        .args(args)
        .env("LICENSING_DATABASE_URL", url)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn migrate_is_idempotent_and_status_reports_the_store() {
    let db = TestDatabase::create().await;
    let version = licensing_store::Store::schema_version();
    assert_eq!(version, 7, "the migrations this build carries");
    let (code, out, _) = run(&db.url, &["migrate"]);
    assert_eq!(
        (code, out),
        (0, format!("schema is up to date (version {version})\n"))
    );
    db.store()
        .append("license-PL1", 0, vec![event("registered", 1)])
        .await
        .unwrap();
    let (code, out, _) = run(&db.url, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "schema version: {version} (this build: {version})"
        )),
        "{out}"
    );
    assert!(out.contains("events: 1 in 1 streams"), "{out}");
    assert!(
        out.contains("evidence: 0 exchanges") && out.contains("oldest month none"),
        "{out}"
    );
}

#[test]
fn bad_invocations_say_what_is_wrong() {
    let (code, _, err) = run("postgres://postgres@127.0.0.1:5432/x", &["drop"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unrecognized subcommand 'drop'") && err.contains("Usage: licensing-store"),
        "{err}"
    );
    let (code, _, err) = run("postgres://postgres@127.0.0.1:1/x", &["migrate"]);
    assert_eq!(code, 1);
    assert!(err.contains("unavailable"), "{err}");
    let output = Command::new(env!("CARGO_BIN_EXE_licensing-store"))
        .arg("migrate")
        .env_remove("LICENSING_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("LICENSING_DATABASE_URL is required but not set"),
        "{err}"
    );
    let (code, _, err) = run(
        "postgres://postgres@127.0.0.1:5432/x?sslmode=maybe",
        &["status"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("LICENSING_DATABASE_URL") && err.contains("sslmode \"maybe\""),
        "{err}"
    );
}
