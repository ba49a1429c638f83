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

/// One crate's modules (by path, `""` for the root) and the modules each one names outside its
/// tests and comments: `crate::a::b`, `super::x`, `self::x` and the `x::` of a child it declares.
/// Names the root re-exports are not followed (a module naming `crate::Item` is not an edge).
fn module_graph(src: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let path_of = |file: &Path| -> String {
        let relative = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        parts.join("::")
    };
    let sources: Vec<(String, String)> = files
        .iter()
        .filter(|f| !f.ends_with("main.rs") && !f.starts_with(src.join("bin")))
        .map(|f| {
            let text = fs::read_to_string(f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            (path_of(f), code.join("\n"))
        })
        .collect();
    let modules: std::collections::BTreeSet<String> =
        sources.iter().map(|(m, _)| m.clone()).collect();
    let join = |parent: &str, child: &str| {
        if parent.is_empty() {
            child.to_owned()
        } else {
            format!("{parent}::{child}")
        }
    };
    let word = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect()
    };
    let mut graph = std::collections::BTreeMap::new();
    for (module, code) in &sources {
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let mut named = std::collections::BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut path = String::new();
            let mut found = None;
            for segment in code[i + 7..].split("::") {
                let segment = word(segment);
                if segment.is_empty() {
                    break;
                }
                path = join(&path, &segment);
                if modules.contains(&path) {
                    found = Some(path.clone());
                }
            }
            named.extend(found);
        }
        for (i, _) in code.match_indices("super::") {
            let child = join(parent, &word(&code[i + 7..]));
            named.insert(if modules.contains(&child) {
                child
            } else {
                parent.to_owned()
            });
        }
        for line in code.lines() {
            let line = line.trim_start();
            let declared = line
                .strip_prefix("pub(crate) mod ")
                .or_else(|| line.strip_prefix("pub mod "))
                .or_else(|| line.strip_prefix("mod "))
                .and_then(|rest| rest.strip_suffix(';'));
            if let Some(child) = declared {
                let uses = code.match_indices(&format!("{child}::")).any(|(i, _)| {
                    let before = &code[..i];
                    before.ends_with("self::")
                        || !before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                });
                if uses {
                    named.insert(join(module, child));
                }
            }
        }
        named.remove(module);
        named.retain(|m| modules.contains(m) && !m.is_empty());
        graph.insert(module.clone(), named.into_iter().collect());
    }
    graph
}

/// A circle in `graph`, if there is one: the modules on it, in order.
fn circle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, Vec<String>>,
        done: &mut std::collections::BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_module_graph_finds_a_circle_when_there_is_one() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    fs::create_dir_all(dir.join("room")).unwrap();
    fs::write(dir.join("lib.rs"), "//! Root.\nmod a;\nmod room;\n").unwrap();
    fs::write(dir.join("a.rs"), "//! A.\nuse crate::room::b::Thing;\n").unwrap();
    fs::write(dir.join("room/mod.rs"), "//! Room.\nmod b;\n").unwrap();
    fs::write(
        dir.join("room/b.rs"),
        "//! B.\nfn f() { super::super::a::g(); crate::a::g() }\n",
    )
    .unwrap();
    let graph = module_graph(&dir);
    assert_eq!(graph["a"], ["room::b"]);
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "room::b".into(), "a".into()])
    );
    fs::write(
        dir.join("room/b.rs"),
        "//! B.\n// crate::a is named in a comment only\n",
    )
    .unwrap();
    assert_eq!(circle(&module_graph(&dir)), None);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_crate_has_a_circle_between_its_modules() {
    for m in members() {
        let src = m.dir.join("src");
        if let Some(found) = circle(&module_graph(&src)) {
            panic!("{}: modules in a circle: {}", m.name, found.join(" -> "));
        }
    }
}

/// The projector's rooms (ADR 0019) and the rooms each may name; `startup` and the root wire
/// everything, and every other module must be in a room listed here.
#[test]
fn the_projector_s_rooms_import_one_way() {
    let allowed: &[(&str, &[&str])] = &[
        ("config", &[]),
        ("commands", &[]),
        ("read_model", &[]),
        ("metrics", &["read_model"]),
        ("evidence", &["read_model"]),
        (
            "workers",
            &["evidence", "read_model", "config", "metrics", "commands"],
        ),
        (
            "api",
            &["evidence", "read_model", "config", "metrics", "commands"],
        ),
        (
            "console",
            &[
                "api",
                "evidence",
                "read_model",
                "config",
                "metrics",
                "commands",
            ],
        ),
    ];
    let src = member("licensing-projector").dir.join("src");
    let graph = module_graph(&src);
    let room = |module: &str| module.split("::").next().unwrap_or_default().to_owned();
    for (module, named) in &graph {
        let from = room(module);
        if from == "startup" || from.is_empty() {
            continue;
        }
        let Some((_, may)) = allowed.iter().find(|(r, _)| *r == from) else {
            panic!("{module} is in no room on the list");
        };
        for target in named {
            let to = room(target);
            assert!(
                to == from || may.contains(&to.as_str()),
                "{module} names {target}: {from} may not import {to}"
            );
        }
    }
    // The read model and the evidence know no HTTP and no broker.
    let mut files = Vec::new();
    rust_files(&src.join("read_model"), &mut files);
    rust_files(&src.join("evidence"), &mut files);
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for forbidden in ["actix_web", "licensing_bus"] {
            assert!(
                !text.contains(forbidden),
                "{} names {forbidden}",
                file.display()
            );
        }
    }
}
