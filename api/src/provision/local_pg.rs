//! A private PostgreSQL cluster under the data directory, for `dashclaw up` without
//! `DATABASE_URL`: built from the machine's installed PostgreSQL binaries, listening only on a
//! Unix socket inside the data directory (so it never clashes with another server's port).
//!
//! Layout: `<data-dir>/pg` (the cluster), `<data-dir>/run` (socket and server log).
//! As root, the cluster is owned by and run as the `postgres` user: `initdb` refuses root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// The one database dashclaw uses inside its private cluster.
pub const DATABASE: &str = "dashclaw";
const SUPERUSER: &str = "postgres";

const INSTALL_HINT: &str = "PostgreSQL is not installed. Install it (Debian/Ubuntu: \
`sudo apt-get install postgresql`; Fedora: `sudo dnf install postgresql-server`; macOS: \
`brew install postgresql@15`) or point DATABASE_URL at an existing database.";

#[derive(Clone, Debug)]
pub struct LocalCluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    /// `(uid, gid)` of the `postgres` user when we run as root, looked up once.
    owner: Option<(u32, u32)>,
}

impl LocalCluster {
    /// Finds the PostgreSQL server binaries; fails with install instructions if there are none.
    pub fn locate(data_dir: &Path) -> Result<Self> {
        let data_dir = std::path::absolute(data_dir)
            .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
        let bin_dir = find_bin_dir().context(INSTALL_HINT)?;
        Ok(Self {
            data_dir,
            bin_dir,
            owner: server_owner()?,
        })
    }

    pub fn pgdata(&self) -> PathBuf {
        self.data_dir.join("pg")
    }

    /// Directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }

    pub fn is_initialized(&self) -> bool {
        self.pgdata().join("PG_VERSION").exists()
    }

    /// Creates the cluster (once).
    pub fn init(&self) -> Result<()> {
        if self.is_initialized() {
            return Ok(());
        }
        for dir in [&self.data_dir, &self.socket_dir()] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.socket_dir(), Some(uid), Some(gid))
                .context("cannot hand the socket directory to the postgres user")?;
            std::os::unix::fs::chown(&self.data_dir, Some(uid), Some(gid))
                .context("cannot hand the data directory to the postgres user")?;
            let probe = self.run_as_owner(Command::new("test").arg("-w").arg(&self.data_dir))?;
            if !probe.status.success() {
                bail!(
                    "the postgres user cannot write {}: choose a --data-dir whose parent \
                     directories it may enter (e.g. under /var/lib or /srv)",
                    self.data_dir.display()
                );
            }
        }
        eprintln!(
            "initializing a private PostgreSQL cluster in {}",
            self.pgdata().display()
        );
        let out = self.run_as_owner(
            Command::new(self.bin_dir.join("initdb"))
                .arg("-D")
                .arg(self.pgdata())
                .args([
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]),
        )?;
        check(&out, "initdb")
    }

    pub fn is_running(&self) -> Result<bool> {
        let out = self.run_as_owner(
            Command::new(self.bin_dir.join("pg_ctl"))
                .arg("status")
                .arg("-D")
                .arg(self.pgdata()),
        )?;
        Ok(out.status.success())
    }

    /// Starts the server unless it already runs. Returns whether this call started it.
    pub fn start(&self) -> Result<bool> {
        if self.is_running()? {
            return Ok(false);
        }
        let options = format!("-c listen_addresses='' -k {}", self.socket_dir().display());
        let out = self.run_as_owner(
            Command::new(self.bin_dir.join("pg_ctl"))
                .arg("-D")
                .arg(self.pgdata())
                .arg("-l")
                .arg(self.socket_dir().join("postgres.log"))
                .arg("-o")
                .arg(options)
                .args(["-w", "start"]),
        )?;
        check(&out, "pg_ctl start")
            .with_context(|| format!("see {}", self.socket_dir().join("postgres.log").display()))?;
        Ok(true)
    }

    pub fn stop(&self) -> Result<()> {
        let out = self.run_as_owner(
            Command::new(self.bin_dir.join("pg_ctl"))
                .arg("-D")
                .arg(self.pgdata())
                .args(["-m", "fast", "-w", "stop"]),
        )?;
        check(&out, "pg_ctl stop")
    }

    /// Connection options for a database of this cluster (over its Unix socket).
    pub fn connect_options(&self, database: &str) -> sqlx::postgres::PgConnectOptions {
        sqlx::postgres::PgConnectOptions::new()
            .socket(self.socket_dir())
            .username(SUPERUSER)
            .database(database)
    }

    /// A `DATABASE_URL` for this cluster's dashclaw database, for other tools.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/{DATABASE}?host={}",
            self.socket_dir().display()
        )
    }

    fn run_as_owner(&self, command: &mut Command) -> Result<Output> {
        let program = command.get_program().to_owned();
        let output = if self.owner.is_some() {
            let mut wrapped = Command::new("runuser");
            wrapped
                .args(["-u", SUPERUSER, "--"])
                .arg(command.get_program())
                .args(command.get_args());
            wrapped.output()
        } else {
            command.output()
        };
        output.with_context(|| format!("cannot run {}", Path::new(&program).display()))
    }
}

fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
}

/// `(uid, gid)` of the `postgres` user when we are root (the server must not run as root).
fn server_owner() -> Result<Option<(u32, u32)>> {
    let me = Command::new("id")
        .arg("-u")
        .output()
        .context("cannot run `id`")?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .args([flag, SUPERUSER])
            .output()
            .context("cannot run `id`")?;
        if !out.status.success() {
            bail!(
                "running as root needs an unprivileged `{SUPERUSER}` user to own the cluster \
                 (initdb refuses root): create one, or run as another user, or set DATABASE_URL"
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("unexpected `id` output")
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

/// `pg_config --bindir` if it has `initdb`, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Result<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, dir)| dir)
        .context("no initdb/pg_ctl found")
}
