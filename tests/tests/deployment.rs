//! The deployment files against the code: every binary that the compose file, the Kubernetes
//! manifest and the systemd units start is one the image builds; every `LICENSING_*` variable they
//! set is one a service reads; every variable a service requires is set by each of them; the
//! shipped alerting rules and dashboard name only exported metrics, and pass promtool; the compose
//! file and the manifest run two ingresses behind one address and two processors over four shards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `LICENSING_…` name in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("LICENSING_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The binaries the image builds: its `--bin` arguments.
fn image_binaries() -> BTreeSet<String> {
    let dockerfile = read("deploy/Dockerfile");
    dockerfile
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect()
}

/// The binaries a compose file or manifest starts: the first word of each `command: [...]`.
fn commands(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("command:"))
        .filter_map(|list| list.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

/// The binaries systemd units start: the file names of `ExecStart=` and `ExecStartPre=`.
fn unit_binaries() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("deploy/systemd")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                if key.starts_with("ExecStart") {
                    let program = value.split_whitespace().next().unwrap_or_default();
                    found.insert(program.rsplit('/').next().unwrap().to_owned());
                }
            }
        }
    }
    found
}

/// The source of every crate, without its unit tests.
fn sources() -> String {
    fn walk(dir: &Path, text: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, text);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let file = std::fs::read_to_string(&path).unwrap();
                // Unit tests name made-up variables.
                text.push_str(file.split("#[cfg(test)]").next().unwrap_or_default());
                text.push('\n');
            }
        }
    }
    let mut text = String::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            walk(&src, &mut text);
        }
    }
    text
}

/// Variables the services read: every `"LICENSING_…"` string in the crates' sources.
fn read_by_services(sources: &str) -> BTreeSet<String> {
    variables(sources)
        .into_iter()
        .filter(|name| sources.contains(&format!("\"{name}\"")))
        .collect()
}

/// Variables without a default: `required("…")`, and those named next to an "is required" error.
fn required_by_services(sources: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = sources.lines().collect();
    let mut required = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(".required(\"LICENSING_") {
            required.extend(variables(line));
        }
        if line.contains("\"is required") {
            for near in &lines[i.saturating_sub(3)..=i] {
                required.extend(variables(near));
            }
        }
    }
    required
}

#[test]
fn every_binary_started_by_a_deployment_file_is_built_by_the_image() {
    let built = image_binaries();
    for service in [
        "licensing-ingress",
        "licensing-processor",
        "licensing-projector",
    ] {
        assert!(
            built.contains(service),
            "the image builds {service}: {built:?}"
        );
    }
    let files = [
        ("docker-compose.yml", commands(&read("docker-compose.yml"))),
        (
            "deploy/kubernetes/licensing.yaml",
            commands(&read("deploy/kubernetes/licensing.yaml")),
        ),
        ("deploy/systemd", unit_binaries()),
    ];
    for (file, started) in files {
        assert!(!started.is_empty(), "{file} starts something");
        for binary in &started {
            assert!(
                built.contains(binary),
                "{file} starts {binary}, which the image does not build"
            );
        }
        for service in [
            "licensing-ingress",
            "licensing-processor",
            "licensing-projector",
        ] {
            assert!(
                started.contains(service),
                "{file} starts {service}: {started:?}"
            );
        }
    }
}

#[test]
fn every_variable_set_is_read_and_every_required_one_is_set() {
    let sources = sources();
    let read_by_services = read_by_services(&sources);
    let required = required_by_services(&sources);
    assert!(
        required.contains("LICENSING_DATABASE_URL") && required.contains("LICENSING_CALLBACK_KEYS"),
        "the required variables are found: {required:?}"
    );
    for file in [
        "docker-compose.yml",
        "deploy/kubernetes/licensing.yaml",
        "deploy/licensing.env.example",
        "deploy/local.env",
    ] {
        let set = variables(&read(file));
        for name in &set {
            assert!(
                read_by_services.contains(name),
                "{file} sets {name}, which no service reads"
            );
        }
        for name in &required {
            assert!(
                set.contains(name),
                "{file} does not set the required {name}"
            );
        }
    }
}

/// Every `licensing_…` metric name in `text`, without the exposition suffixes a query may add.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("licensing_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric names the services register: the string literals `"licensing_…"` of their sources.
fn exported_metrics() -> BTreeSet<String> {
    let sources = sources();
    let mut names = BTreeSet::new();
    for (start, _) in sources.match_indices("\"licensing_") {
        let tail = &sources[start + 1..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with('"') {
            names.insert(tail[..end].to_owned());
        }
    }
    names
}

#[test]
fn the_dashboard_and_the_alerts_name_only_metrics_the_services_export() {
    let exported = exported_metrics();
    assert!(
        exported.contains("licensing_heartbeat_debt")
            && exported.contains("licensing_ingress_callbacks"),
        "the registered metrics are found: {exported:?}"
    );
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
        "deploy/grafana/licensing.json",
    ] {
        let named = metric_names(&read(file));
        assert!(!named.is_empty(), "{file} names metrics");
        let unknown: Vec<&String> = named.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics nobody exports: {unknown:?}"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/licensing.json")).expect("valid JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| p.len() >= 10)
    );
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let output = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian package prometheus; scripts/test installs it)");
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The block of a top-level compose service: its lines, indented under `  name:`.
fn compose_service(compose: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header);
    assert!(
        lines.next().is_some(),
        "docker-compose.yml has a service {name}"
    );
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The number after `key:` in `text` (the first one).
fn number_after(text: &str, key: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().trim_matches('"').parse().ok())
}

#[test]
fn the_stacks_run_two_ingresses_behind_one_address_and_two_processors_over_four_shards() {
    let compose = read("docker-compose.yml");
    assert_eq!(number_after(&compose, "LICENSING_SHARDS:"), Some(4));
    for service in ["ingress", "processor"] {
        let block = compose_service(&compose, service);
        assert_eq!(
            number_after(&block, "replicas:"),
            Some(2),
            "{service}: {block}"
        );
    }
    // The ingresses publish no port of their own: one address, the edge proxy, spreads over them.
    let ingress = compose_service(&compose, "ingress");
    assert!(!ingress.contains("ports:"), "{ingress}");
    let edge = compose_service(&compose, "edge");
    assert!(
        edge.contains("\"8080:8080\"") && edge.contains("\"8081:8081\""),
        "{edge}"
    );
    assert!(edge.contains("./deploy/nginx/edge.conf:"), "{edge}");
    let conf = read("deploy/nginx/edge.conf");
    for port in ["8080", "8081"] {
        assert!(conf.contains(&format!("listen {port};")), "{conf}");
        assert!(
            conf.contains(&format!("proxy_pass http://$ingress:{port};")),
            "{conf}"
        );
    }
    assert!(
        conf.contains("resolver 127.0.0.11"),
        "Docker's DNS answers every replica: {conf}"
    );

    let manifest = read("deploy/kubernetes/licensing.yaml");
    assert_eq!(number_after(&manifest, "LICENSING_SHARDS:"), Some(4));
    for deployment in ["licensing-ingress", "licensing-processor"] {
        let block = manifest
            .split("\n---")
            .find(|d| {
                d.contains("kind: Deployment") && d.contains(&format!("name: {deployment}\n"))
            })
            .unwrap_or_else(|| panic!("a Deployment {deployment}"));
        let replicas = number_after(block, "replicas:").unwrap();
        assert!(
            (2..=4).contains(&replicas),
            "{deployment}: {replicas} replicas"
        );
    }
}

#[test]
fn every_example_database_url_names_its_sslmode() {
    // Without one, libpq's default (prefer) accepts any certificate and falls back to plain text.
    for path in [
        "docker-compose.yml",
        "deploy/kubernetes/licensing.yaml",
        "deploy/licensing.env.example",
        "deploy/local.env",
    ] {
        let text = read(path);
        let urls: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once("LICENSING_DATABASE_URL"))
            .map(|(_, url)| url.trim_start_matches([':', '=', ' ']))
            .collect();
        assert!(!urls.is_empty(), "{path} sets LICENSING_DATABASE_URL");
        for url in urls {
            assert!(url.contains("sslmode="), "{path}: {url} names no sslmode");
        }
    }
    // Anywhere but the compose network and this machine, the server is authenticated.
    for path in [
        "deploy/kubernetes/licensing.yaml",
        "deploy/licensing.env.example",
    ] {
        assert!(
            read(path).contains("sslmode=verify-full"),
            "{path} authenticates its database"
        );
    }
}
