//! Helpers for the system tests: where the workspace is, and what `cargo metadata` says about it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| unreachable!("the tests package lives inside the workspace"))
}

/// A workspace member as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Package name.
    pub name: String,
    /// Directory of its manifest.
    pub dir: PathBuf,
    /// Names of its normal (non-dev, non-build) dependencies.
    pub dependencies: Vec<String>,
}

/// The workspace members, from `cargo metadata --no-deps`.
pub fn members() -> Vec<Member> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("cargo metadata runs: {e}"));
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("metadata is JSON: {e}"));
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|package| Member {
            name: package["name"].as_str().unwrap_or_default().to_owned(),
            dir: PathBuf::from(package["manifest_path"].as_str().unwrap_or_default())
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default(),
            dependencies: package["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str().map(str::to_owned))
                .collect(),
        })
        .collect()
}
