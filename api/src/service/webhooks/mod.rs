//! Webhook delivery: the worker that claims due outbox rows (`FOR UPDATE SKIP LOCKED`, so
//! several server processes can share one database), POSTs them signed, records every
//! attempt and retries failures with exponential backoff. The outbox itself is filled from
//! the ledger by the `webhooks` projection (`dashclaw_projections::webhooks`), fed by the
//! ledger tail; requests that cause events never wait for deliveries.

pub mod registrations;
pub mod signature;
pub mod target;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{header, Method, Request};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::service::http_client::HttpClient;
use dashclaw_projections::read::webhooks as read;

use crate::service::Error;

/// Delivery settings (`DASHCLAW_WEBHOOK_*`, `DASHCLAW_WEBHOOKS_ALLOW_PRIVATE`).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Allow private, loopback and link-local targets (off in production; tests need it).
    pub allow_private: bool,
    /// The first retry waits this long; each further one twice as long as the one before.
    pub retry_base: Duration,
    /// No retry waits longer than this.
    pub retry_max: Duration,
    /// Attempts per delivery before it is given up (`failed`).
    pub max_attempts: u32,
    /// Timeout of one attempt (connect, send, answer).
    pub timeout: Duration,
    /// How often the worker looks for due rows when nothing wakes it (rows queued by other
    /// nodes, retries coming due).
    pub poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            max_attempts: 10,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
}

impl WebhookConfig {
    /// The wait before attempt `n + 1` after `n` failed attempts (`n >= 1`).
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failed.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.retry_base
            .checked_mul(factor)
            .unwrap_or(self.retry_max)
            .min(self.retry_max)
    }
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub delivery_id: String,
    pub attempt: i32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub success: bool,
    pub duration_ms: i32,
    /// When the attempt started.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Handle to the delivery workers. Cheap to clone; they stop with the last clone, or
/// gracefully (finishing the attempts in flight) with [`Webhooks::shutdown`].
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    worker: Worker,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

#[derive(Clone)]
struct Worker {
    pool: PgPool,
    config: WebhookConfig,
    client: HttpClient,
    wake: Arc<Notify>,
}

/// Rows claimed per pass (delivered concurrently).
const CLAIM: i64 = 8;
/// Worker loops per process. A pass lasts as long as its slowest receiver (up to the
/// timeout), so one dead receiver holds up only its own pass; a worker that found a full
/// pass wakes another.
const WORKERS: usize = 4;
/// The shortest pause of a worker that found nothing to claim.
const IDLE_FLOOR: Duration = Duration::from_millis(20);

impl Webhooks {
    /// Starts the worker. `wake` is notified by whoever queues deliveries.
    pub fn start(pool: PgPool, config: WebhookConfig, wake: Arc<Notify>) -> Self {
        let worker = Worker {
            client: HttpClient::new(config.allow_private, config.timeout),
            pool,
            config,
            wake,
        };
        let (stop, stopped) = watch::channel(false);
        let tasks = (0..WORKERS)
            .map(|_| tokio::spawn(worker.clone().run(stopped.clone())))
            .collect();
        Self {
            inner: Arc::new(Inner {
                worker,
                stop,
                tasks: Mutex::new(tasks),
            }),
        }
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.inner.worker.config
    }

    /// Asks the worker to look for due deliveries now.
    pub fn wake(&self) {
        self.inner.worker.wake.notify_one();
    }

    /// Stops the worker after the attempts in flight are recorded.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks = self
            .inner
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Attempts one queued delivery now, whether due or not (the test endpoint); `None` when
    /// another worker holds it.
    pub async fn attempt_now(&self, delivery_id: &str) -> Result<Option<Attempt>, Error> {
        let (_, mut done) = self.inner.worker.pass(Some(delivery_id)).await?;
        Ok(done.pop())
    }
}

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let worked = match self.pass(None).await {
                Ok((claimed, _)) => {
                    if claimed as i64 >= CLAIM {
                        // A backlog: let another worker help.
                        self.wake.notify_one();
                    }
                    claimed > 0
                }
                Err(e) => {
                    tracing::warn!(error = %e.error, "webhook delivery pass failed; will retry");
                    false
                }
            };
            if worked {
                continue;
            }
            let wait = self.next_due().await.unwrap_or(self.config.poll);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.min(self.config.poll)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// How long until the next pending row is due (None: nothing pending). At least
    /// [`IDLE_FLOOR`]: a row due now that this pass did not claim is another worker's, and
    /// polling for it in a tight loop would only burn the database.
    async fn next_due(&self) -> Option<Duration> {
        read::next_due(&self.pool)
            .await
            .ok()
            .flatten()
            .map(|wait| wait.max(IDLE_FLOOR))
    }

    /// Claims due rows (or the one named), attempts them concurrently and records the
    /// results, all in one transaction: a process that dies mid-pass releases its claims
    /// (the attempts in flight are then made again; receivers de-duplicate on the id).
    /// Returns how many rows it claimed, and the attempts it made.
    async fn pass(&self, only: Option<&str>) -> Result<(usize, Vec<Attempt>), Error> {
        let mut tx = self.pool.begin().await?;
        let which = match only {
            Some(id) => read::Claim::Only(id),
            None => read::Claim::Due,
        };
        let claimed = read::claim(&mut tx, which, CLAIM).await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok((0, Vec::new()));
        }
        let count = claimed.len();
        let attempts = futures_util::future::join_all(claimed.into_iter().map(|row| async move {
            let read::ClaimedDelivery {
                delivery_id,
                event_type,
                body,
                attempts,
                url,
                secret,
                live,
                ..
            } = row;
            match (url, secret, live) {
                (Some(url), Some(secret), true) => Ok(self
                    .attempt(delivery_id, attempts + 1, &event_type, &url, &secret, body)
                    .await),
                // The webhook was deleted: nothing more to deliver.
                _ => Err(delivery_id),
            }
        }))
        .await;
        let mut done = Vec::new();
        for attempt in attempts {
            match attempt {
                Ok(attempt) => {
                    self.record(&mut tx, &attempt).await?;
                    done.push(attempt);
                }
                Err(gone) => {
                    read::cancel(&mut tx, &gone).await?;
                }
            }
        }
        tx.commit().await?;
        Ok((count, done))
    }

    async fn record(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        a: &Attempt,
    ) -> Result<(), Error> {
        let given_up = !a.success && a.attempt as u32 >= self.config.max_attempts;
        let state = if a.success {
            read::DeliveryState::Delivered
        } else if given_up {
            read::DeliveryState::Failed
        } else {
            read::DeliveryState::Pending
        };
        let wait = self.config.backoff(a.attempt.max(1) as u32);
        let made = read::AttemptMade {
            delivery_id: &a.delivery_id,
            attempt: a.attempt,
            status_code: a.status_code,
            error: a.error.as_deref(),
            success: a.success,
            duration_ms: a.duration_ms,
            at: a.at,
        };
        read::record_attempt(tx, &made, state, wait).await?;
        if given_up {
            tracing::warn!(delivery = %a.delivery_id, attempts = a.attempt, "webhook delivery given up");
        }
        Ok(())
    }

    /// One signed POST.
    async fn attempt(
        &self,
        delivery_id: String,
        attempt: i32,
        event: &str,
        url: &str,
        secret: &str,
        body: String,
    ) -> Attempt {
        let at = chrono::Utc::now();
        let timestamp = at.timestamp();
        let signature = signature::sign(secret, timestamp, body.as_bytes());
        let started = Instant::now();
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("dashclaw-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(signature::EVENT_HEADER, event)
            .header(signature::DELIVERY_HEADER, &delivery_id)
            .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
            .header(signature::SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)));
        let result = match request {
            Ok(request) => self.client.send(request).await,
            Err(e) => Err(format!("cannot build the request: {e}")),
        };
        let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let (status_code, error, success) = match result {
            Ok((status, _)) if status.is_success() => (Some(status.as_u16()), None, true),
            Ok((status, _)) => (
                Some(status.as_u16()),
                Some(format!("the receiver answered {status}")),
                false,
            ),
            Err(e) => (None, Some(e), false),
        };
        Attempt {
            delivery_id,
            attempt,
            status_code,
            error,
            success,
            duration_ms,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = WebhookConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(1000),
            ..WebhookConfig::default()
        };
        let waits: Vec<u128> = (1..=7).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(c.backoff(200), Duration::from_millis(1000));
    }
}
