//! `dashclaw verify [--against HEAD_FILE]...` and `dashclaw checkpoint`: whole-ledger
//! verification with a progress bar, and signing tree heads on demand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use dashclaw_events::{LogSigner, OrgId, TreeHead};
use dashclaw_store::verify::{Scope, Verdict};
use sqlx::PgPool;

/// `dashclaw verify`: 0 intact, 1 tampered (or a kept head that no published key verifies),
/// 2 for unusable input.
pub async fn verify(pool: &PgPool, org: Option<&OrgId>, against: &[PathBuf]) -> Result<ExitCode> {
    let keys = dashclaw_store::keys::published(pool).await?;
    let mut kept = Vec::with_capacity(against.len());
    for path in against {
        let note = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the tree head {}", path.display()))?;
        match TreeHead::open(&note, &keys) {
            Ok((head, kid)) => {
                eprintln!(
                    "kept tree head {}: {} events of {} signed at {} by key {kid}",
                    path.display(),
                    head.size,
                    head.origin,
                    head.signed_at
                );
                kept.push(head);
            }
            Err(e) => {
                println!("NOT VERIFIED: the tree head in {}: {e}", path.display());
                return Ok(ExitCode::from(1));
            }
        }
    }
    let total = dashclaw_store::chain::recorded_size(pool, org).await?;
    eprintln!(
        "verifying {total} events against {} published key(s)",
        keys.keys.len()
    );
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let scope = Scope {
        only: org,
        kept: &kept,
        // Undocumented knob for tests: check even short chains in parallel ranges first.
        ranged_from: std::env::var("DASHCLAW_VERIFY_RANGED_FROM")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(dashclaw_store::verify::RANGED_FROM),
    };
    let verdict =
        dashclaw_store::verify::verify_scope(pool, &keys, &scope, &|n| bar.inc(n)).await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    match verdict {
        Verdict::Intact(orgs) => {
            for o in &orgs {
                let kept = match o.kept_heads {
                    0 => String::new(),
                    n => format!(", contains {n} kept tree head(s)"),
                };
                println!(
                    "ok  {}: {} events, {} signed checkpoint(s) ({} tree head(s), roots recomputed){kept}",
                    o.org_id, o.events, o.checkpoints, o.tree_heads
                );
            }
            let events: u64 = orgs.iter().map(|o| o.events).sum();
            println!(
                "intact: {events} events in {} org(s) verified in {seconds:.3} s ({:.0} events/s)",
                orgs.len(),
                events as f64 / seconds.max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Tampered(b) => {
            println!(
                "TAMPERED at ({}, {}): {}: {}",
                b.org_id, b.ledger_seq, b.kind, b.detail
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `dashclaw checkpoint`: sign a tree head of one org's chain, or of every org's that moved,
/// and print each as its signed note (blank-line separated).
pub async fn checkpoint(pool: &PgPool, signer: &LogSigner, org: Option<String>) -> Result<()> {
    let signed = match org {
        Some(org) => dashclaw_store::checkpoints::sign(pool, signer, &OrgId::new(org)?)
            .await?
            .into_iter()
            .collect(),
        None => dashclaw_store::checkpoints::sign_all(pool, signer).await?,
    };
    for (i, checkpoint) in signed.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match &checkpoint.note {
            Some(note) => print!("{note}"),
            // Signed at this size by a version before tree heads.
            None => println!("{}", serde_json::to_string(&checkpoint.signed)?),
        }
    }
    eprintln!(
        "{} tree head(s) signed with key {} as {}",
        signed.len(),
        signer.key().kid(),
        signer.name()
    );
    Ok(())
}
