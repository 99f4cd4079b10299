//! The Session aggregate: one agent's working session (contract section 11), its state
//! changes and the status history its events list shows.
//!
//! A session starts `running`; each update may change its status and its working-copy facts
//! (green level, branch freshness). A status change is a session event with a detail (the
//! blocked reason, or the summary of a terminal status). A `closed` session is final: every
//! further update is refused.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::SessionId;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Running,
    Idle,
    Blocked,
    Finished,
    Completed,
    Failed,
    Cancelled,
    Closed,
}

impl SessionStatus {
    pub const ALL: &'static [&'static str] = &[
        "running",
        "idle",
        "blocked",
        "finished",
        "completed",
        "failed",
        "cancelled",
        "closed",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Idle => "idle",
            Self::Blocked => "blocked",
            Self::Finished => "finished",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "idle" => Self::Idle,
            "blocked" => Self::Blocked,
            "finished" => Self::Finished,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "closed" => Self::Closed,
            _ => return None,
        })
    }

    /// Whether the session's work is over (its actions window ends at the status change).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Finished | Self::Completed | Self::Failed | Self::Cancelled | Self::Closed
        )
    }
}

/// The verification level a working copy has reached (the `green_contract` policy's ladder).
pub const GREEN_LEVELS: &[&str] = &["none", "targeted", "package", "workspace", "merge_ready"];
/// How a branch stands against its base.
pub const BRANCH_FRESHNESS: &[&str] = &["fresh", "stale", "diverged", "unknown"];

/// One entry of a session's status history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// 1 for the start, then one more per change.
    pub seq: u32,
    /// The status entered.
    pub kind: SessionStatus,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: SessionId,
    pub agent_id: String,
    pub workspace: Option<String>,
    pub branch: Option<String>,
    pub status: SessionStatus,
    pub status_since: DateTime<Utc>,
    pub blocked_reason: Option<String>,
    pub green_level: Option<String>,
    pub branch_freshness: Option<String>,
    pub commits_behind: Option<u32>,
    pub summary: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal status (the end of its actions window), if it has.
    pub ended_at: Option<DateTime<Utc>>,
    pub history: Vec<StatusChange>,
}

/// The fields one update sets (absent: unchanged). Validated at the edge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub green_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_freshness: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits_behind: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl SessionChanges {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub record: Option<SessionRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Start {
        session_id: SessionId,
        agent_id: String,
        workspace: Option<String>,
        branch: Option<String>,
        now: DateTime<Utc>,
    },
    Update {
        changes: SessionChanges,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    Started {
        session_id: SessionId,
        agent_id: String,
        workspace: Option<String>,
        branch: Option<String>,
        at: DateTime<Utc>,
    },
    Updated {
        changes: SessionChanges,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Started { .. } => "SessionStarted",
            Self::Updated { .. } => "SessionUpdated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// 409.
    #[error("Session already exists")]
    AlreadyExists,
    /// 404.
    #[error("Session not found")]
    NotFound,
    /// 409.
    #[error("Session is closed and cannot be updated")]
    Closed,
    /// 400.
    #[error("No update fields provided")]
    NothingToUpdate,
}

impl Aggregate for Session {
    const TYPE: &'static str = "Session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SessionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SessionError> {
        let event = match (command, &self.record) {
            (
                SessionCommand::Start {
                    session_id,
                    agent_id,
                    workspace,
                    branch,
                    now,
                },
                None,
            ) => SessionEvent::Started {
                session_id,
                agent_id,
                workspace,
                branch,
                at: now,
            },
            (SessionCommand::Start { .. }, Some(_)) => return Err(SessionError::AlreadyExists),
            (SessionCommand::Update { .. }, None) => return Err(SessionError::NotFound),
            (SessionCommand::Update { .. }, Some(r)) if r.status == SessionStatus::Closed => {
                return Err(SessionError::Closed)
            }
            (SessionCommand::Update { changes, .. }, Some(_)) if changes.is_empty() => {
                return Err(SessionError::NothingToUpdate)
            }
            (SessionCommand::Update { changes, now }, Some(_)) => {
                SessionEvent::Updated { changes, at: now }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Started {
                session_id,
                agent_id,
                workspace,
                branch,
                at,
            } => {
                self.record = Some(SessionRecord {
                    session_id,
                    agent_id,
                    workspace,
                    branch,
                    status: SessionStatus::Running,
                    status_since: at,
                    blocked_reason: None,
                    green_level: None,
                    branch_freshness: None,
                    commits_behind: None,
                    summary: None,
                    created_at: at,
                    updated_at: at,
                    ended_at: None,
                    history: vec![StatusChange {
                        seq: 1,
                        kind: SessionStatus::Running,
                        detail: None,
                        at,
                    }],
                })
            }
            SessionEvent::Updated { changes, at } => {
                let Some(r) = self.record.as_mut() else {
                    return;
                };
                if changes.green_level.is_some() {
                    r.green_level = changes.green_level;
                }
                if changes.branch_freshness.is_some() {
                    r.branch_freshness = changes.branch_freshness;
                }
                if changes.commits_behind.is_some() {
                    r.commits_behind = changes.commits_behind;
                }
                if changes.blocked_reason.is_some() {
                    r.blocked_reason = changes.blocked_reason;
                }
                if changes.summary.is_some() {
                    r.summary = changes.summary;
                }
                r.updated_at = at;
                let Some(status) = changes.status.filter(|s| *s != r.status) else {
                    return;
                };
                let detail = match status {
                    SessionStatus::Blocked => r.blocked_reason.clone(),
                    s if s.is_terminal() => r.summary.clone(),
                    _ => None,
                };
                if status != SessionStatus::Blocked {
                    r.blocked_reason = None;
                }
                r.status = status;
                r.status_since = at;
                r.ended_at = status.is_terminal().then_some(at);
                let seq = r.history.len() as u32 + 1;
                r.history.push(StatusChange {
                    seq,
                    kind: status,
                    detail,
                    at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap()
    }

    fn started() -> SessionEvent {
        SessionEvent::Started {
            session_id: SessionId::parse("sess_0123456789ab").unwrap(),
            agent_id: "agent-1".into(),
            workspace: Some("/repo".into()),
            branch: Some("main".into()),
            at: now(),
        }
    }

    fn update(status: SessionStatus) -> SessionChanges {
        SessionChanges {
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn starts_once_and_updates_only_known_sessions() {
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(SessionCommand::Start {
                session_id: SessionId::parse("sess_0123456789ab").unwrap(),
                agent_id: "agent-1".into(),
                workspace: None,
                branch: None,
                now: now(),
            })
            .then_expect_error(SessionError::AlreadyExists);
        TestFramework::<Session>::with(())
            .given_no_previous_events()
            .when(SessionCommand::Update {
                changes: update(SessionStatus::Idle),
                now: now(),
            })
            .then_expect_error(SessionError::NotFound);
        TestFramework::<Session>::with(())
            .given(vec![started()])
            .when(SessionCommand::Update {
                changes: SessionChanges::default(),
                now: now(),
            })
            .then_expect_error(SessionError::NothingToUpdate);
    }

    #[test]
    fn a_closed_session_refuses_every_update() {
        let closed = SessionEvent::Updated {
            changes: update(SessionStatus::Closed),
            at: now(),
        };
        TestFramework::<Session>::with(())
            .given(vec![started(), closed])
            .when(SessionCommand::Update {
                changes: SessionChanges {
                    commits_behind: Some(1),
                    ..Default::default()
                },
                now: now(),
            })
            .then_expect_error(SessionError::Closed);
    }

    #[test]
    fn status_changes_are_the_history_with_their_details() {
        let mut s = Session::default();
        s.apply(started());
        s.apply(SessionEvent::Updated {
            changes: SessionChanges {
                status: Some(SessionStatus::Blocked),
                blocked_reason: Some("waiting for CI".into()),
                ..Default::default()
            },
            at: now(),
        });
        // Not a status change: no history entry.
        s.apply(SessionEvent::Updated {
            changes: SessionChanges {
                green_level: Some("package".into()),
                status: Some(SessionStatus::Blocked),
                ..Default::default()
            },
            at: now(),
        });
        s.apply(SessionEvent::Updated {
            changes: SessionChanges {
                status: Some(SessionStatus::Completed),
                summary: Some("merged".into()),
                ..Default::default()
            },
            at: now(),
        });
        let r = s.record.unwrap();
        let kinds: Vec<_> = r.history.iter().map(|h| (h.seq, h.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (1, SessionStatus::Running),
                (2, SessionStatus::Blocked),
                (3, SessionStatus::Completed)
            ]
        );
        assert_eq!(r.history[1].detail.as_deref(), Some("waiting for CI"));
        assert_eq!(r.history[2].detail.as_deref(), Some("merged"));
        assert_eq!(r.green_level.as_deref(), Some("package"));
        assert_eq!(r.blocked_reason, None);
        assert_eq!(r.ended_at, Some(now()));
    }
}
