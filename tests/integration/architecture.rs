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
    // sweeps reads the ledger through store::chain and the open actions it sweeps through
    // projections::read (action_records is a read model: its SQL belongs to projections).
    (
        "sweeps",
        &[
            "dashclaw-domain",
            "dashclaw-events",
            "dashclaw-projections",
            "dashclaw-store",
        ],
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

/// The ledger's tables: their SQL belongs to `store`.
const LEDGER_TABLES: &[&str] = &["events", "ledger_heads", "checkpoints", "signing_keys"];

/// The read models' tables: their SQL belongs to `projections` (whose folds also read the
/// ledger, inside their checkpoint's transaction).
const READ_MODEL_TABLES: &[&str] = &[
    "action_records",
    "guard_decisions",
    "assumptions",
    "api_keys",
    "posture_snapshots",
    "webhooks",
    "webhook_secrets",
    "webhook_outbox",
    "webhook_attempts",
    "analytics_actions",
    "analytics_approvals",
    "analytics_decisions",
    "projection_checkpoints",
];

/// Every table named right after `FROM`, `JOIN`, `INTO`, `UPDATE` or `TRUNCATE` (SQL
/// keywords as this code base writes them, upper case) in a source text, with its line.
fn tables_named(source: &str) -> Vec<(usize, String)> {
    const KEYWORDS: &[&str] = &["FROM", "JOIN", "INTO", "UPDATE", "TRUNCATE"];
    let mut words = Vec::new();
    for (n, line) in source.lines().enumerate() {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                words.push((n + 1, word));
            }
        }
    }
    words
        .windows(2)
        .filter(|w| KEYWORDS.contains(&w[0].1))
        .map(|w| (w[1].0, w[1].1.to_owned()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn each_table_has_one_owner_for_its_sql() {
    // `api` joins this list once its handlers read through `store` and `projections`.
    let foreign: &[(&str, Vec<&str>)] = &[
        ("store", READ_MODEL_TABLES.to_vec()),
        ("sweeps", [LEDGER_TABLES, READ_MODEL_TABLES].concat()),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offences = Vec::new();
    for (krate, tables) in foreign {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for (line, table) in tables_named(&source) {
                if tables.contains(&table.as_str()) {
                    offences.push(format!("{}:{line} names {table}", file.display()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "SQL outside its table's owner:\n{}",
        offences.join("\n")
    );
    // The scanner does see SQL (so that an empty answer means something).
    let chain = std::fs::read_to_string(root.join("store/src/chain.rs")).unwrap();
    assert!(tables_named(&chain)
        .iter()
        .any(|(_, t)| t == "ledger_heads"));
    assert_eq!(
        tables_named("x\n  FROM\n events e JOIN checkpoints"),
        [(3, "events".to_owned()), (3, "checkpoints".to_owned())]
    );
}
