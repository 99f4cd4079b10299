//! Managing an org's webhooks (admin): register (the signing secret is returned once),
//! list (secrets masked), delete, send a test delivery, and read the recorded attempts.
//! Registrations are `Webhook` events; deliveries come from the ledger through the outbox.

use chrono::{DateTime, Utc};
use dashclaw_domain::ids::WebhookId;
use dashclaw_domain::webhook::{self, Webhook, WebhookCommand, WebhookError, WebhookRecord};
use serde_json::json;
use sha2::{Digest, Sha256};

use dashclaw_projections::read::webhooks as read;

use super::target;
use super::Attempt;
use crate::service::aggregates::{Actor, CommandError};
use crate::service::{random, Caller, Error, ErrorCode, Service};

const ADMIN_ONLY: &str = "Admin access required to manage webhooks";
/// Most event types one registration may list.
pub const MAX_EVENTS: usize = 32;

/// A registration as lists show it.
#[derive(Debug)]
pub struct WebhookListing {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// The secret's last four characters (`None` if it was lost).
    pub masked_secret: Option<String>,
}

/// What a test delivery came to: its id and the attempt, if one was made here.
#[derive(Debug)]
pub struct TestDelivery {
    pub delivery_id: String,
    pub attempt: Option<Attempt>,
}

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Webhook not found")
}

/// The secret as lists show it: enough to recognise, not to use.
fn masked(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

/// What is wrong with a registration's events and URL (empty: nothing).
pub fn registration_problems(url: &str, events: &[String], allow_private: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if !webhook::is_known_event(e) {
            let mut known = vec![webhook::ALL];
            known.extend(webhook::DELIVERED);
            known.extend(webhook::ACCEPTED_ONLY);
            problems.push(format!("events[{i}] must be one of: {}", known.join(", ")));
        }
    }
    if let Err(why) = target::check(url, allow_private) {
        problems.push(why);
    }
    problems
}

impl Service {
    /// Folds the org's ledger into registrations and the outbox (read-your-writes for lists
    /// and the worker), waking the worker if that queued deliveries.
    async fn catch_up_webhooks(&self, caller: &Caller) -> Result<(), Error> {
        if self.outbox().catch_up(&caller.org).await? > 0 {
            self.webhooks().wake();
        }
        Ok(())
    }

    /// A live webhook of the caller's org (deleted, foreign and malformed ids: not found).
    async fn live_webhook(&self, caller: &Caller, id: &str) -> Result<WebhookRecord, Error> {
        let Ok(id) = WebhookId::parse(id) else {
            return Err(not_found());
        };
        let hook: Webhook = self.aggregates().load(&caller.org, id.as_str()).await?;
        hook.record
            .filter(|r| r.deleted_at.is_none())
            .ok_or_else(not_found)
    }

    /// The org's live webhooks, newest first.
    pub async fn webhooks_of(&self, caller: &Caller) -> Result<Vec<WebhookListing>, Error> {
        self.catch_up_webhooks(caller).await?;
        let live = read::live_webhooks(self.pool(), &caller.org).await?;
        Ok(live
            .into_iter()
            .map(|w| WebhookListing {
                id: w.webhook_id,
                url: w.url,
                events: w.events,
                created_at: w.created_at,
                masked_secret: w.secret.as_deref().map(masked),
            })
            .collect())
    }

    /// Registers a webhook for `events` (none: every event) at `url` (admin); returns it
    /// and its signing secret, which is shown only now.
    pub async fn register_webhook(
        &self,
        caller: &Caller,
        url: String,
        mut events: Vec<String>,
    ) -> Result<(WebhookRecord, String), Error> {
        caller.require_admin(ADMIN_ONLY)?;
        let allow_private = self.webhooks().config().allow_private;
        let problems = registration_problems(&url, &events, allow_private);
        if !problems.is_empty() {
            return Err(Error::validation(problems));
        }
        if events.is_empty() {
            events.push(webhook::ALL.to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        events.retain(|e| seen.insert(e.clone()));
        let id = WebhookId::random(random()?);
        let secret = hex::encode(random::<32>()?);
        let record = WebhookRecord {
            id: id.clone(),
            url,
            events,
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            created_by: caller.principal.clone(),
            created_at: self.clock().now(),
            deleted_at: None,
        };
        // The secret is kept first: a registration that reached the ledger can always sign.
        // If the command then fails, the secret names no webhook and stays unused (it is not
        // removed: a failure after the commit would leave a webhook without its secret).
        read::store_secret(self.pool(), &caller.org, id.as_str(), &secret).await?;
        let command = WebhookCommand::Register(Box::new(record.clone()));
        let actor = Actor::of(&caller.principal, None);
        match self
            .aggregates()
            .execute::<Webhook>(&caller.org, id.as_str(), command, &actor)
            .await
        {
            Ok(_) => Ok((record, secret)),
            Err(CommandError::Failed(e)) => Err(e),
            Err(CommandError::Rejected(e)) => Err(Error::internal(e)),
        }
    }

    /// Deletes a webhook (admin); returns its id.
    pub async fn delete_webhook(&self, caller: &Caller, id: &str) -> Result<WebhookId, Error> {
        caller.require_admin(ADMIN_ONLY)?;
        if id.is_empty() {
            return Err(Error::validation(vec!["id is required".into()]));
        }
        let hook = self.live_webhook(caller, id).await?;
        let command = WebhookCommand::Delete {
            by: caller.principal.clone(),
            now: self.clock().now(),
        };
        let actor = Actor::of(&caller.principal, None);
        match self
            .aggregates()
            .execute::<Webhook>(&caller.org, hook.id.as_str(), command, &actor)
            .await
        {
            Ok(_) => {}
            Err(CommandError::Rejected(WebhookError::NotFound | WebhookError::AlreadyDeleted)) => {
                return Err(not_found())
            }
            Err(CommandError::Rejected(e)) => return Err(Error::internal(e)),
            Err(CommandError::Failed(e)) => return Err(e),
        }
        // Fold the deletion now, so that the list and the worker stop seeing the webhook.
        self.catch_up_webhooks(caller).await?;
        Ok(hook.id)
    }

    /// Sends a test delivery to a webhook now (admin); a failed one is retried like any.
    pub async fn test_webhook(&self, caller: &Caller, id: &str) -> Result<TestDelivery, Error> {
        caller.require_admin(ADMIN_ONLY)?;
        let hook = self.live_webhook(caller, id).await?;
        // The worker reads the registration from the read model.
        self.catch_up_webhooks(caller).await?;
        let delivery_id = format!("whd_test_{}", hex::encode(random::<16>()?));
        let now = self.clock().now();
        let data = json!({
            "webhook_id": hook.id.as_str(),
            "message": "Test delivery from dashclaw",
        });
        let body = dashclaw_projections::webhooks::body(
            &delivery_id,
            "test",
            &caller.org,
            None,
            now,
            &data,
        );
        // Not due by itself: attempted right here, and retried like any other if it fails.
        read::queue_test_delivery(
            self.pool(),
            &caller.org,
            hook.id.as_str(),
            &delivery_id,
            &body,
        )
        .await?;
        let attempt = self.webhooks().attempt_now(&delivery_id).await?;
        Ok(TestDelivery {
            delivery_id,
            attempt,
        })
    }

    /// A webhook's recorded attempts, newest first, and how many there are.
    pub async fn webhook_deliveries(
        &self,
        caller: &Caller,
        id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(WebhookId, Vec<read::AttemptListing>, i64), Error> {
        let hook = self.live_webhook(caller, id).await?;
        let page = dashclaw_projections::read::Page { limit, offset };
        let listed = read::attempts(self.pool(), &caller.org, hook.id.as_str(), page).await?;
        let total = read::attempts_total(self.pool(), &caller.org, hook.id.as_str()).await?;
        let attempts = listed;
        Ok((hook.id, attempts, total))
    }
}
