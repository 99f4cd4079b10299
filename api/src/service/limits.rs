//! Fixed-window rate limits. The application applies the per-org limit to the operations
//! that record decisions (whatever the transport); the HTTP adapter uses the same windows
//! for its per-client limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashclaw_domain::OrgId;

use super::{Error, ErrorCode};

/// A fixed-window rate limit: `max` requests per `window`.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub max: u32,
    pub window: Duration,
}

/// Counters of one limit, by key. Cheap to clone; clones share the counters.
#[derive(Clone)]
pub struct Windows {
    limit: RateLimit,
    windows: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl Windows {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            windows: Arc::default(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts a hit on `key`; `Err(seconds to wait)` when over the limit.
    pub fn hit(&self, key: String) -> Result<(), u64> {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let limit = self.limit;
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < limit.window);
        }
        let (start, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= limit.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > limit.max {
            let left = limit.window.saturating_sub(now.duration_since(*start));
            Err(left.as_secs().max(1))
        } else {
            Ok(())
        }
    }
}

/// The per-org limit on recording decisions and actions.
#[derive(Clone)]
pub struct OrgLimit(Windows);

impl OrgLimit {
    pub fn new(limit: RateLimit) -> Self {
        Self(Windows::new(limit))
    }

    /// Counts one recording request of `org`; 429 `ORG_RATE_LIMITED` when over.
    pub fn hit(&self, org: &OrgId) -> Result<(), Error> {
        let max = self.0.limit().max;
        self.0.hit(format!("org:{org}")).map_err(|secs| {
            Error::new(
                ErrorCode::OrgRateLimited,
                format!(
                    "Organization rate limit exceeded ({max} requests per window). Retry after {secs}s."
                ),
            )
            .with("retry_after_ms", secs * 1000)
            .with("limit", max)
            .retry(secs)
        })
    }
}
