//! The server's clock, the only `now()` of the application: the system clock plus an offset
//! that tests can advance, so that time-driven rules (approval expiry, claim windows) are
//! tested without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Cheap to clone; clones share the offset.
#[derive(Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let t = Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst));
        // The millisecond precision the ledger and the wire show.
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }

    /// Moves this clock forward (tests only ever need forward).
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}
