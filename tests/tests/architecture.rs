//! The architecture's statements of absence, checked against the real manifests and sources:
//! the domain depends on nothing, the protocol crate knows no storage or queue, each IO library is
//! named by one adapter crate only, and every source file says what it is for.

use std::fs;
use std::path::Path;

use system_tests::{Member, members, workspace_root};

fn member(name: &str) -> Member {
    members()
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is a workspace member"))
}

#[test]
fn crate_directories_are_named_like_their_crates() {
    for m in members() {
        if m.name == "system-tests" {
            assert_eq!(m.dir, workspace_root().join("tests"));
        } else {
            assert_eq!(
                m.dir,
                workspace_root().join("crates").join(&m.name),
                "{}",
                m.name
            );
        }
    }
}

#[test]
fn the_domain_depends_on_nothing() {
    let domain = member("licensing-domain");
    assert!(
        domain.dependencies.is_empty(),
        "licensing-domain depends on {:?}",
        domain.dependencies
    );
}

#[test]
fn the_protocol_crate_knows_no_storage_queue_or_server() {
    let protocol = member("koogallery");
    for forbidden in ["tokio-postgres", "deadpool-postgres", "lapin", "actix-web"] {
        assert!(
            !protocol.dependencies.iter().any(|d| d == forbidden),
            "koogallery depends on {forbidden}"
        );
    }
    assert!(
        !protocol
            .dependencies
            .iter()
            .any(|d| d.starts_with("licensing")),
        "koogallery depends on a licensing crate: {:?}",
        protocol.dependencies
    );
}

#[test]
fn services_never_depend_on_each_other_and_the_ingress_never_on_the_store() {
    let services = [
        "licensing-ingress",
        "licensing-processor",
        "licensing-projector",
    ];
    for service in services {
        let deps = member(service).dependencies;
        for other in services.iter().filter(|s| **s != service) {
            assert!(
                !deps.iter().any(|d| d == other),
                "{service} depends on {other}"
            );
        }
    }
    let ingress = member("licensing-ingress").dependencies;
    for forbidden in ["licensing-store", "tokio-postgres", "deadpool-postgres"] {
        assert!(
            !ingress.iter().any(|d| d == forbidden),
            "the ingress must never talk to PostgreSQL, but names {forbidden}"
        );
    }
}

/// Each IO library may be named by at most these crates (its adapter, and the binaries wiring it).
#[test]
fn each_io_library_has_one_adapter() {
    let owners: &[(&str, &[&str])] = &[
        ("tokio-postgres", &["licensing-store"]),
        ("deadpool-postgres", &["licensing-store"]),
        ("lapin", &["licensing-bus"]),
        // The marketplace's client, and the trace exporter's posts to a collector (ADR 0017).
        (
            "reqwest",
            &["koogallery", "koogallery-cli", "licensing-runtime"],
        ),
        (
            "actix-web",
            &[
                "licensing-runtime",
                "licensing-ingress",
                "licensing-projector",
                "koogallery-cli",
            ],
        ),
    ];
    for m in members() {
        for (library, allowed) in owners {
            if m.dependencies.iter().any(|d| d == library) {
                assert!(
                    allowed.contains(&m.name.as_str()),
                    "{} depends on {library}; only {allowed:?} may",
                    m.name
                );
            }
        }
    }
}

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.ends_with("snapshots") {
                rust_files(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_module_comment() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    rust_files(&workspace_root().join("tests"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            !first.starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! comment: {missing:?}"
    );
}

#[test]
fn only_the_store_queries_the_events_checkpoints_evidence_and_dead_letter_tables() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| {
            let path = f.to_string_lossy();
            path.contains("/src/") && !path.contains("/crates/licensing-store/")
        })
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            [
                "FROM events",
                "INTO events",
                "FROM checkpoints",
                "UPDATE checkpoints",
                "INTO checkpoints",
                "evidence_exchanges",
                "dead_letters ",
            ]
            .iter()
            .any(|sql| text.contains(sql))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "SQL on the store's tables outside licensing-store: {offenders:?}"
    );
}

/// Every dependency between the workspace's own crates is one of these (normal dependencies; a
/// crate's tests may use more). A new edge is a design decision: add it here, with the reason in
/// the commit, or find the crate the code belongs in.
#[test]
fn internal_crate_edges_are_on_the_allow_list() {
    let allowed: &[(&str, &[&str])] = &[
        ("koogallery", &[]),
        ("licensing-domain", &[]),
        ("licensing-bus", &[]),
        ("licensing-store", &[]),
        ("licensing-entitlement", &[]),
        (
            "licensing-runtime",
            &["koogallery", "licensing-entitlement"],
        ),
        ("licensing-messages", &["koogallery", "licensing-domain"]),
        ("koogallery-cli", &["koogallery", "licensing-entitlement"]),
        (
            "licensing-ingress",
            &[
                "koogallery",
                "licensing-bus",
                "licensing-domain",
                "licensing-entitlement",
                "licensing-messages",
                "licensing-runtime",
            ],
        ),
        (
            "licensing-processor",
            &[
                "koogallery",
                "licensing-bus",
                "licensing-domain",
                "licensing-messages",
                "licensing-runtime",
                "licensing-store",
            ],
        ),
        (
            "licensing-projector",
            &[
                "koogallery",
                "licensing-bus",
                "licensing-domain",
                "licensing-entitlement",
                "licensing-messages",
                "licensing-runtime",
                "licensing-store",
            ],
        ),
        ("system-tests", &[]),
    ];
    let internal: Vec<String> = members().into_iter().map(|m| m.name).collect();
    for m in members() {
        let Some((_, edges)) = allowed.iter().find(|(name, _)| *name == m.name) else {
            panic!("{} is not on the allow-list of internal edges", m.name);
        };
        for dependency in m.dependencies.iter().filter(|d| internal.contains(d)) {
            assert!(
                edges.contains(&dependency.as_str()),
                "{} depends on {dependency}, which is not on the allow-list",
                m.name
            );
        }
    }
}
