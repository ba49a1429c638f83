//! External tools the tests drive: schemathesis and the chaos and attack loops.

use super::*;

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
