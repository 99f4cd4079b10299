//! Agent sessions (contract section 11): started by an agent, updated as its work goes (each
//! status change a session event), listed with what their actions add up to.

use dashclaw_domain::ids::SessionId;
use dashclaw_domain::session::{
    Session, SessionChanges, SessionCommand, SessionError, SessionRecord, SessionStatus,
};
use dashclaw_projections::read::sessions::{self, SessionActivity};
use dashclaw_projections::read::{entities, Page};
use serde_json::json;

use super::aggregates::{Actor, CommandError};
use super::{random, Caller, Error, ErrorCode, Permission, Service};

/// A new session.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub agent_id: String,
    pub workspace: Option<String>,
    pub branch: Option<String>,
}

/// Which sessions to list.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub agent_id: Option<String>,
    pub status: Option<SessionStatus>,
    pub limit: i64,
}

/// A session with what its actions add up to.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub record: SessionRecord,
    pub activity: SessionActivity,
}

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Session not found")
}

fn refused(e: CommandError<SessionError>) -> Error {
    match e {
        CommandError::Rejected(SessionError::NotFound) => not_found(),
        CommandError::Rejected(e @ SessionError::Closed) => {
            Error::new(ErrorCode::Conflict, e.to_string())
        }
        CommandError::Rejected(e @ SessionError::NothingToUpdate) => {
            Error::bad_request(e.to_string())
        }
        CommandError::Rejected(e @ SessionError::AlreadyExists) => Error::internal(e),
        CommandError::Failed(e) => e,
    }
}

impl Service {
    /// Starts a session (status `running`, its first event).
    pub async fn start_session(
        &self,
        caller: &Caller,
        new: NewSession,
    ) -> Result<SessionView, Error> {
        caller.require(Permission::Write)?;
        let id = SessionId::random(random()?);
        let command = SessionCommand::Start {
            session_id: id.clone(),
            agent_id: new.agent_id.clone(),
            workspace: new.workspace,
            branch: new.branch,
            now: self.clock().now(),
        };
        let actor = Actor::of(&caller.principal, Some(&new.agent_id));
        let session = self
            .aggregates()
            .create::<Session>(&caller.org, id.as_str(), command, &actor)
            .await
            .map_err(refused)?;
        let record = session.record.ok_or_else(not_found)?;
        Ok(SessionView {
            record,
            activity: SessionActivity::default(),
        })
    }

    /// A session of the caller's org, with its activity.
    pub async fn session(&self, caller: &Caller, id: &str) -> Result<SessionView, Error> {
        let record = self.load_session(caller, id).await?;
        self.projections().catch_up(&caller.org).await?;
        self.with_activity(caller, vec![record])
            .await?
            .pop()
            .ok_or_else(not_found)
    }

    /// A session of the caller's org as its events leave it (its history included), without
    /// the activity of its actions.
    pub async fn load_session(&self, caller: &Caller, id: &str) -> Result<SessionRecord, Error> {
        let Ok(id) = SessionId::parse(id) else {
            return Err(not_found());
        };
        let s: Session = self.aggregates().load(&caller.org, id.as_str()).await?;
        s.record.ok_or_else(not_found)
    }

    /// Updates a session; a status change is a session event. A closed session refuses.
    pub async fn update_session(
        &self,
        caller: &Caller,
        id: &str,
        changes: SessionChanges,
    ) -> Result<SessionView, Error> {
        caller.require(Permission::Write)?;
        if changes.is_empty() {
            return Err(Error::bad_request("No update fields provided"));
        }
        let current = self.load_session(caller, id).await?;
        let actor = Actor::of(&caller.principal, Some(&current.agent_id));
        let command = SessionCommand::Update {
            changes,
            now: self.clock().now(),
        };
        let session = self
            .aggregates()
            .execute::<Session>(&caller.org, current.session_id.as_str(), command, &actor)
            .await
            .map_err(refused)?;
        let record = session.record.ok_or_else(not_found)?;
        self.projections().catch_up(&caller.org).await?;
        self.with_activity(caller, vec![record])
            .await?
            .pop()
            .ok_or_else(not_found)
    }

    /// The caller's org's sessions, most recently changed first.
    pub async fn sessions(
        &self,
        caller: &Caller,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionView>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let mut record = serde_json::Map::new();
        if let Some(agent) = &filter.agent_id {
            record.insert("agent_id".into(), json!(agent));
        }
        if let Some(status) = filter.status {
            record.insert("status".into(), json!(status.as_str()));
        }
        let fragment = json!({ "record": record });
        let found: Vec<Session> = entities::page(
            self.pool(),
            &caller.org,
            &fragment,
            Page::first(filter.limit),
        )
        .await?;
        let records = found.into_iter().filter_map(|s| s.record).collect();
        self.with_activity(caller, records).await
    }

    /// The sessions with their activity, from read models the caller has caught up.
    async fn with_activity(
        &self,
        caller: &Caller,
        records: Vec<SessionRecord>,
    ) -> Result<Vec<SessionView>, Error> {
        let refs: Vec<&SessionRecord> = records.iter().collect();
        let mut activity = sessions::activity(self.pool(), &caller.org, &refs).await?;
        Ok(records
            .into_iter()
            .map(|record| SessionView {
                activity: activity
                    .remove(record.session_id.as_str())
                    .unwrap_or_default(),
                record,
            })
            .collect())
    }
}
