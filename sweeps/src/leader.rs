//! One leader per sweep across every node on a database: the node holding a session-level
//! PostgreSQL advisory lock, on a connection of its own. A leader that dies (or loses its
//! connection) releases the lock with its session; the others try at every cadence, so one of
//! them takes over within one cadence.

use sqlx::{Connection, PgConnection, PgPool};

pub struct Leader {
    pool: PgPool,
    /// The lock's name (`dashclaw.sweep.<sweep>`), hashed by PostgreSQL into the lock key.
    name: String,
    /// The connection holding the lock while this node leads.
    held: Option<PgConnection>,
}

impl Leader {
    pub fn new(pool: PgPool, sweep: &str) -> Self {
        Self {
            pool,
            name: format!("dashclaw.sweep.{sweep}"),
            held: None,
        }
    }

    /// Whether this node leads now: keeps the lock if its connection is alive, else tries to
    /// take it.
    pub async fn lead(&mut self) -> bool {
        if let Some(conn) = self.held.as_mut() {
            if conn.ping().await.is_ok() {
                return true;
            }
            tracing::warn!(lock = %self.name, "lost the leader connection");
            self.held = None;
        }
        match self.try_take().await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(lock = %self.name, error = %e, "cannot try for leadership");
                false
            }
        }
    }

    async fn try_take(&mut self) -> Result<bool, sqlx::Error> {
        // Detached from the pool: the lock lives exactly as long as this connection.
        let mut conn = self.pool.acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await?;
        if taken {
            tracing::info!(lock = %self.name, "leading");
            self.held = Some(conn);
        } else {
            let _ = conn.close().await;
        }
        Ok(taken)
    }
}
