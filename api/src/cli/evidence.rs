//! The auditor's commands. Offline (no server, no database, each check on its own line):
//! `dashclaw verify-bundle FILE` and `dashclaw verify-export DIR`. In-process against the
//! database, like `verify`: `dashclaw export` and `dashclaw replay-decision [ID]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::http::Request;
use dashclaw_events::bundle::{parse_bundle, Check, EvidenceFailure};
use dashclaw_events::export::{ExportVerifier, EVENTS_FILE, MANIFEST_FILE};
use dashclaw_events::{Jwks, LogSigner, OrgId};
use http_body_util::Full;
use sqlx::PgPool;

use crate::service::compliance::{self, ExportRange};
use crate::service::evidence::verify_bundle as verify;
use crate::service::http_client::HttpClient;
use crate::service::replay::{replay_all, replay_event, DecisionReplay, PolicyHistory};

/// Where the verifier takes the published keys from.
pub enum KeySource {
    /// A saved JWKS (`GET /.well-known/jwks.json`).
    File(PathBuf),
    /// The JWKS of a running server.
    Server(String),
}

impl KeySource {
    async fn load(&self) -> Result<(Jwks, String)> {
        match self {
            Self::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the key set {}", path.display()))?;
                let jwks = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a JWKS", path.display()))?;
                Ok((jwks, path.display().to_string()))
            }
            Self::Server(base) => {
                let url = format!("{}/.well-known/jwks.json", base.trim_end_matches('/'));
                let request = Request::get(&url)
                    .body(Full::new(Bytes::new()))
                    .with_context(|| format!("bad server URL {base}"))?;
                let (status, body) = HttpClient::new(true, Duration::from_secs(30))
                    .send(request)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot fetch {url}: {e}"))?;
                if !status.is_success() {
                    bail!("{url} answered {status}");
                }
                let jwks = serde_json::from_slice(&body)
                    .with_context(|| format!("{url} is not a JWKS"))?;
                Ok((jwks, url))
            }
        }
    }
}

/// `dashclaw verify-bundle`: 0 when every check holds, 1 naming the first that fails, 2 for a
/// file that is not a bundle or keys that cannot be read.
pub async fn verify_bundle(file: &Path, keys: &KeySource) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the bundle {}", file.display()))?;
    let (jwks, from) = keys.load().await?;
    let bundle = match parse_bundle(&text) {
        Ok(bundle) => bundle,
        Err(e) => bail!("{}: {e}", file.display()),
    };
    let action = bundle
        .payload
        .pointer("/action/action_id")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    println!(
        "bundle {}: action {action}, issued {} by {}",
        file.display(),
        bundle.issued_at,
        bundle.engine_version
    );
    println!("keys   {} key(s) from {from}", jwks.keys.len());
    let report = verify(&bundle, &jwks);
    for check in &report.passed {
        println!("ok     {}: {}", check.name, check.detail);
    }
    match report.outcome {
        Ok(evidence) => {
            println!(
                "VERIFIED: {} events of action {action} are on {}'s ledger in the tree of {} \
                 signed at {}, and every decision replays",
                evidence.events.len(),
                evidence
                    .tree_head
                    .org()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                evidence.tree_head.size,
                evidence.tree_head.signed_at
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(EvidenceFailure::Unusable(why)) => bail!("{}: unusable bundle: {why}", file.display()),
        Err(EvidenceFailure::Failed { check, detail }) => {
            println!("FAIL   {check}: {detail}");
            println!("NOT VERIFIED: {check}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `dashclaw replay-decision`: replays one decision (printed in full) or every decision of
/// the org (one line each that differs, and a summary). 0 when all are identical, 1 when any
/// differs.
pub async fn replay_decisions(pool: &PgPool, org: &OrgId, id: Option<&str>) -> Result<ExitCode> {
    if let Some(id) = id {
        let events = dashclaw_store::chain::stream_events(pool, org, "GuardDecision", id).await?;
        let Some(event) = events.first() else {
            bail!("no guard decision {id} in {org}");
        };
        let history = PolicyHistory::load(pool, org).await?;
        let replay = replay_event(&history, org, event)?;
        print_replay(&replay);
        return Ok(if replay.identical() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let (mut total, mut differing) = (0u64, 0u64);
    let started = std::time::Instant::now();
    replay_all(pool, org, |replay| {
        total += 1;
        if !replay.identical() {
            differing += 1;
            println!(
                "DIFFERS {} (ledger_seq {}): {}",
                replay.record.decision_id,
                replay.ledger_seq,
                describe(&replay)
            );
        }
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    if differing == 0 {
        println!(
            "identical: {total} decisions of {org} replayed in {seconds:.3} s, each under the \
             policy set it recorded"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{differing} of {total} decisions of {org} replay differently");
        Ok(ExitCode::from(1))
    }
}

fn describe(replay: &DecisionReplay) -> String {
    replay
        .replay
        .differences
        .iter()
        .map(|d| {
            format!(
                "{}: recorded {} replayed {}",
                d.field, d.recorded, d.replayed
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn print_replay(r: &DecisionReplay) {
    let e = &r.record.evaluation;
    println!(
        "decision   {} (ledger_seq {}, {:?}, evaluated {})",
        r.record.decision_id, r.ledger_seq, r.record.purpose, r.record.evaluated_at
    );
    println!(
        "engine     recorded {}, replayed {}",
        r.replay
            .recorded_engine
            .as_deref()
            .unwrap_or("(not recorded)"),
        r.replay.replay_engine
    );
    println!(
        "policies   {} ({} policies, as of ledger_seq {}{})",
        r.policy_set.version,
        r.policy_set.policies.len(),
        r.policy_set.as_of,
        if r.policy_set_found {
            ""
        } else {
            "; NOT the version the decision recorded"
        }
    );
    println!(
        "recorded   {} risk {} matched {:?}",
        e.decision, e.risk_score, e.matched_policies
    );
    let again = &r.replay.evaluation;
    println!(
        "replayed   {} risk {} matched {:?}",
        again.decision, again.risk_score, again.matched_policies
    );
    if r.identical() {
        println!("identical: verdict, reasons, warnings, matched policies and risk breakdown");
    } else {
        for d in &r.replay.differences {
            println!(
                "DIFFERS    {}: recorded {} replayed {}",
                d.field, d.recorded, d.replayed
            );
        }
    }
}

/// `dashclaw export`: writes `OUT/events.jsonl` and `OUT/manifest.json` (OUT must not exist
/// or be empty), with a progress bar on a terminal.
pub async fn export(
    pool: &PgPool,
    signer: &LogSigner,
    org: &OrgId,
    range: ExportRange,
    out: &Path,
) -> Result<ExitCode> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} exists and is not empty: export into a new directory",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let total = dashclaw_store::exports::seq_range(pool, org, range.from, range.to)
        .await?
        .map_or(0, |(first, last)| last - first + 1);
    let bar = progress_bar(total, "events");
    let started = std::time::Instant::now();
    let path = out.join(EVENTS_FILE);
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let (lines, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(file);
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk)?;
        }
        file.flush()?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    let manifest =
        compliance::export(pool, signer, org, range, &lines, &|n| bar.set_position(n)).await;
    drop(lines);
    writer.await??;
    let manifest = manifest?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    std::fs::write(
        out.join(MANIFEST_FILE),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    println!(
        "exported {} events of {org} (ledger_seq {}..={}) to {} in {seconds:.3} s ({:.0} events/s)",
        manifest.events,
        manifest.first_ledger_seq,
        manifest.last_ledger_seq,
        out.display(),
        manifest.events as f64 / seconds.max(1e-9)
    );
    let head_size = manifest.tree_head.lines().nth(1).unwrap_or("?").to_owned();
    match &manifest.previous {
        Some(p) => println!(
            "covered by the signed tree head of {head_size} events; consistent with the previous \
             export's head of {} events ({} proof hashes)",
            p.tree_head.lines().nth(1).unwrap_or("?"),
            p.consistency.len()
        ),
        None => println!(
            "covered by the signed tree head of {head_size} events; the org's first export"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `dashclaw verify-export`: 0 when every check holds, 1 naming the first that fails, 2 for
/// a directory that is not an export or keys that cannot be read.
pub async fn verify_export(dir: &Path, keys: &KeySource) -> Result<ExitCode> {
    use std::io::BufRead;
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let events_path = dir.join(EVENTS_FILE);
    let events = std::fs::File::open(&events_path)
        .with_context(|| format!("cannot read {}", events_path.display()))?;
    let (jwks, from) = keys.load().await?;
    println!("export {}", dir.display());
    println!("keys   {} key(s) from {from}", jwks.keys.len());
    let mut verifier = match ExportVerifier::open(&manifest, &jwks) {
        Ok(verifier) => verifier,
        Err((passed, EvidenceFailure::Unusable(why))) => {
            print_checks(&passed);
            bail!("{}: {why}", manifest_path.display())
        }
        Err((passed, failure)) => return Ok(fail(&passed, &failure)),
    };
    let bar = progress_bar(verifier.manifest().events, "events");
    let started = std::time::Instant::now();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, events);
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if let Err(failure) = verifier.push(line.strip_suffix('\n').unwrap_or(&line)) {
            bar.finish_and_clear();
            return Ok(fail(verifier.passed(), &failure));
        }
        n += 1;
        if n % 65_536 == 0 {
            bar.set_position(n);
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let (passed, outcome) = verifier.finish(&jwks);
    match outcome {
        Ok(head) => {
            print_checks(&passed);
            println!(
                "VERIFIED: {n} events of {} in {seconds:.3} s ({:.0} events/s), all in the tree \
                 of {} signed at {}",
                head.org().map(|o| o.to_string()).unwrap_or_default(),
                n as f64 / seconds.max(1e-9),
                head.size,
                head.signed_at
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => Ok(fail(&passed, &failure)),
    }
}

fn print_checks(passed: &[Check]) {
    for check in passed {
        println!("ok     {}: {}", check.name, check.detail);
    }
}

fn fail(passed: &[Check], failure: &EvidenceFailure) -> ExitCode {
    print_checks(passed);
    match failure {
        EvidenceFailure::Failed { check, detail } => {
            println!("FAIL   {check}: {detail}");
            println!("NOT VERIFIED: {check}");
        }
        EvidenceFailure::Unusable(why) => println!("NOT VERIFIED: {why}"),
    }
    ExitCode::from(1)
}

fn progress_bar(total: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
