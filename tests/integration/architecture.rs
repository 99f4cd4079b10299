//! Dependencies point inward: reads every crate's Cargo.toml and fails on an outward edge or
//! on IO/framework crates in the pure crates.

use std::collections::BTreeSet;
use std::path::Path;

/// Which workspace crates each crate may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("events", &[]),
    ("domain", &["dashclaw-events"]),
    ("store", &["dashclaw-events"]),
    (
        "projections",
        &["dashclaw-domain", "dashclaw-events", "dashclaw-store"],
    ),
    (
        "sweeps",
        &["dashclaw-domain", "dashclaw-events", "dashclaw-store"],
    ),
    (
        "api",
        &[
            "dashclaw-projections",
            "dashclaw-sweeps",
            "dashclaw-store",
            "dashclaw-domain",
            "dashclaw-events",
        ],
    ),
];

/// Crates the pure layers must never use.
const IMPURE: &[&str] = &[
    "tokio",
    "sqlx",
    "axum",
    "async-graphql",
    "async-graphql-axum",
    "postgres-es",
    "reqwest",
];

fn dependencies(krate: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: toml::Table = text.parse().unwrap();
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|table| manifest.get(*table).and_then(|t| t.as_table()))
        .flat_map(|t| t.keys().cloned())
        .collect()
}

#[test]
fn every_workspace_crate_is_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let members: BTreeSet<String> = manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    let checked: BTreeSet<String> = ALLOWED.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(
        members, checked,
        "add new crates to ALLOWED with their permitted dependencies"
    );
}

#[test]
fn dependencies_point_inward() {
    for (krate, allowed) in ALLOWED {
        for dep in dependencies(krate) {
            if dep.starts_with("dashclaw") {
                assert!(
                    allowed.contains(&dep.as_str()),
                    "{krate} must not depend on {dep} (outward)"
                );
            }
        }
    }
}

#[test]
fn pure_crates_do_no_io() {
    for krate in ["events", "domain"] {
        for dep in dependencies(krate) {
            assert!(
                !IMPURE.contains(&dep.as_str()),
                "{krate} must stay pure but depends on {dep}"
            );
        }
    }
}
