//! Which database a command uses: `DATABASE_URL` if set, else the private cluster under the
//! data directory (started for the command if it is not running, and stopped after).

pub mod local_pg;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use local_pg::{LocalCluster, DATABASE};

/// An open database, and the private cluster if this process started it.
pub struct Database {
    pub pool: PgPool,
    /// Where the data lives, for humans.
    pub location: String,
    started: Option<LocalCluster>,
}

impl Database {
    /// Connects to `url`, or to the private cluster in `data_dir`, creating that cluster when
    /// `provision` is set (`dashclaw up`); other commands need an existing one.
    pub async fn open(url: Option<&str>, data_dir: &Path, provision: bool) -> Result<Self> {
        Self::open_for_server(url, data_dir, provision, OFFLINE_ACQUIRE_TIMEOUT).await
    }

    /// [`Self::open`] for a server: a request waits at most `acquire_timeout` for a database
    /// connection (then it is answered 503, and nothing it asked for is written later).
    pub async fn open_for_server(
        url: Option<&str>,
        data_dir: &Path,
        provision: bool,
        acquire_timeout: Duration,
    ) -> Result<Self> {
        let options = || pool_options().acquire_timeout(acquire_timeout);
        if let Some(url) = url {
            let pool = options()
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to DATABASE_URL ({})", redact(url)))?;
            return Ok(Self {
                pool,
                location: redact(url),
                started: None,
            });
        }
        let cluster = LocalCluster::locate(data_dir)?;
        if !cluster.is_initialized() {
            if !provision {
                bail!(
                    "DATABASE_URL is not set and {} holds no dashclaw cluster: run `dashclaw up` \
                     first, pass --data-dir, or set DATABASE_URL",
                    data_dir.display()
                );
            }
            cluster.init()?;
        }
        let started = cluster.start()?;
        let admin = options()
            .max_connections(1)
            .connect_with(cluster.connect_options("postgres"))
            .await
            .context("cannot connect to the private cluster")?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&admin)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        let pool = options()
            .connect_with(cluster.connect_options(DATABASE))
            .await?;
        Ok(Self {
            pool,
            location: cluster.url(),
            started: started.then_some(cluster),
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        dashclaw_store::MIGRATOR
            .run(&self.pool)
            .await
            .context("migrations failed")
    }

    /// Closes the pool and stops the private cluster if this process started it.
    pub async fn close(self) -> Result<()> {
        self.pool.close().await;
        if let Some(cluster) = self.started {
            cluster.stop()?;
        }
        Ok(())
    }
}

/// How long offline commands (replay, verify, keys) wait for a connection.
const OFFLINE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(OFFLINE_ACQUIRE_TIMEOUT)
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
