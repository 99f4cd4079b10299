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
const LEDGER_TABLES: &[&str] = &[
    "events",
    "ledger_heads",
    "checkpoints",
    "signing_keys",
    "merkle_subtrees",
    "merkle_trees",
    "compliance_exports",
];

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
    "entity_records",
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
    let foreign: &[(&str, Vec<&str>)] = &[
        ("store", READ_MODEL_TABLES.to_vec()),
        ("sweeps", [LEDGER_TABLES, READ_MODEL_TABLES].concat()),
        ("api", [LEDGER_TABLES, READ_MODEL_TABLES].concat()),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The benchmark harness probes its own scratch database to measure (projection lag,
    // event counts); it is not a read or write path of the product.
    let harness = root.join("api/src/bench");
    let mut offences = Vec::new();
    for (krate, tables) in foreign {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        for file in files.into_iter().filter(|f| !f.starts_with(&harness)) {
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

/// The `crate::<module>` paths a source file names.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in source.match_indices("crate::") {
        let rest = &source[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// The Rust files of `api/src/<module>` (a folder or a file).
fn api_module_files(module: &str) -> Vec<std::path::PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    } else {
        files.push(src.join(format!("{module}.rs")));
    }
    files
}

/// The transports and their tooling: none of them may appear in the application layer.
const TRANSPORT_CRATES: &[&str] = &[
    "axum",
    "async_graphql",
    "async_graphql_axum",
    "clap",
    "utoipa",
    "rmcp",
    "tower",
    "tower_http",
];

/// The inbound adapters: each authenticates, parses, calls one operation and renders.
const ADAPTERS: &[&str] = &["rest", "graphql", "cli"];

#[test]
fn the_application_layer_knows_no_transport() {
    let files = api_module_files("service");
    assert!(files.len() > 10, "the application layer is api/src/service");
    let mut offences = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for krate in TRANSPORT_CRATES {
                if code.contains(&format!("{krate}::")) {
                    offences.push(format!("{}:{} uses {krate}", file.display(), n + 1));
                }
            }
        }
        // Nor anything of the adapters, the wire shapes or the HTTP edge.
        for module in crate_paths(&source) {
            if module != "service" {
                offences.push(format!("{} uses crate::{module}", file.display()));
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn adapters_do_not_import_each_other() {
    let mut offences = Vec::new();
    for adapter in ADAPTERS {
        for file in api_module_files(adapter) {
            let source = std::fs::read_to_string(&file).unwrap();
            for module in crate_paths(&source) {
                if module != *adapter && ADAPTERS.contains(&module.as_str()) {
                    offences.push(format!("{} uses crate::{module}", file.display()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn api_modules_form_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    assert!(modules.len() >= 10, "{modules:?}");
    let edges: std::collections::BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| {
            let mut to = BTreeSet::new();
            for file in api_module_files(m) {
                let source = std::fs::read_to_string(&file).unwrap();
                to.extend(crate_paths(&source).into_iter().filter(|t| t != m));
            }
            (m.clone(), to)
        })
        .collect();
    // Depth-first search; a module met again while on the stack closes a cycle.
    fn visit(
        m: &str,
        edges: &std::collections::BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_owned());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle among api's modules: {}", cycle.join(" -> "));
        }
    }
    // The search does find cycles (so that passing means something).
    let looped: std::collections::BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert!(visit("a", &looped, &mut Vec::new(), &mut BTreeSet::new()).is_some());
}

#[test]
fn rest_answers_typed_shapes_not_ad_hoc_json() {
    // Every REST body is a serde struct that the OpenAPI document describes; the error
    // envelope is rendered once, in `http_error`. Only the request schemas' examples may
    // write `json!`.
    let mut offences = Vec::new();
    for file in api_module_files("rest") {
        let source = std::fs::read_to_string(&file).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let example = code.trim_start().starts_with("#[schema(example = json!(");
            if (code.contains("json!(") && !example)
                || code.contains("Json<Value>")
                || code.contains("Json<serde_json::Value>")
            {
                offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn rest_functions_stay_short() {
    // An adapter parses, calls one operation and renders; a long handler is an operation
    // hiding in the adapter.
    const MAX_LINES: usize = 60;
    let mut offences = Vec::new();
    for file in api_module_files("rest") {
        let source = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = source.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_start();
            let is_fn = [
                "fn ",
                "async fn ",
                "pub fn ",
                "pub async fn ",
                "pub(crate) async fn ",
            ]
            .iter()
            .any(|p| line.starts_with(p));
            if !is_fn {
                i += 1;
                continue;
            }
            let (mut depth, mut opened, mut end) = (0i32, false, i);
            for (j, l) in lines.iter().enumerate().skip(i) {
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                opened |= l.contains('{');
                if opened && depth == 0 {
                    end = j;
                    break;
                }
            }
            if end + 1 - i > MAX_LINES {
                offences.push(format!(
                    "{}:{} is {} lines",
                    file.display(),
                    i + 1,
                    end + 1 - i
                ));
            }
            i = end + 1;
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}
