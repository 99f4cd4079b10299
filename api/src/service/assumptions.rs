//! Assumptions (contract 10.1-10.4): what an agent believed when it acted, registered
//! against one of its actions and later validated or invalidated (an invalidation is a
//! signal every live subscriber hears of).

use dashclaw_domain::action::{Action, ActionRecord};
use dashclaw_domain::assumption::{
    Assumption, AssumptionCommand, AssumptionError, AssumptionRecord,
};
use dashclaw_domain::ids::{ActionId, AssumptionId};

use super::aggregates::{Actor, CommandError};
use super::{random, Caller, Error, ErrorCode, Permission, Service};

/// A new assumption.
#[derive(Clone, Debug)]
pub struct NewAssumption {
    pub action_id: String,
    pub assumption: String,
    pub basis: Option<String>,
    /// A client-chosen id; else random.
    pub assumption_id: Option<AssumptionId>,
}

/// A verdict on an assumption.
#[derive(Clone, Debug)]
pub enum Verdict {
    Validated,
    /// Invalidated, for a (non-empty) reason.
    Invalidated(String),
}

/// Which assumptions to list.
#[derive(Clone, Debug, Default)]
pub struct AssumptionFilter {
    pub action_id: Option<String>,
    pub agent_id: Option<String>,
    pub validated: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Assumption not found")
}

impl Service {
    /// Registers an assumption of one of the caller's org's actions.
    pub async fn register_assumption(
        &self,
        caller: &Caller,
        new: NewAssumption,
    ) -> Result<AssumptionRecord, Error> {
        caller.require(Permission::Write)?;
        let parent = match ActionId::parse(&new.action_id) {
            Ok(id) => {
                self.aggregates()
                    .load::<Action>(&caller.org, id.as_str())
                    .await?
                    .record
            }
            Err(_) => None,
        };
        let Some(parent) = parent else {
            return Err(Error::new(ErrorCode::NotFound, "Parent action not found"));
        };
        let id = match new.assumption_id {
            Some(id) => id,
            None => AssumptionId::random(random()?),
        };
        let record = AssumptionRecord {
            assumption_id: id.clone(),
            action_id: parent.action_id,
            assumption: new.assumption,
            basis: new.basis,
            validated: false,
            invalidated: false,
            invalidated_reason: None,
            validated_at: None,
            invalidated_at: None,
            created_at: self.clock().now(),
        };
        let actor = Actor::of(&caller.principal, Some(&parent.agent_id));
        let command = AssumptionCommand::Register(Box::new(record));
        match self
            .aggregates()
            .execute::<Assumption>(&caller.org, id.as_str(), command, &actor)
            .await
        {
            Ok(a) => a.record.ok_or_else(not_found),
            Err(CommandError::Rejected(AssumptionError::AlreadyExists)) => Err(Error::new(
                ErrorCode::Conflict,
                "Assumption with this assumption_id already exists",
            )),
            Err(CommandError::Rejected(e)) => Err(Error::internal(e)),
            Err(CommandError::Failed(e)) => Err(e),
        }
    }

    /// An assumption of the caller's org, with the action it belongs to.
    pub async fn assumption(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(AssumptionRecord, Option<ActionRecord>), Error> {
        let assumption = self.load_assumption(caller, id).await?;
        let action: Action = self
            .aggregates()
            .load(&caller.org, assumption.action_id.as_str())
            .await?;
        Ok((assumption, action.record))
    }

    async fn load_assumption(&self, caller: &Caller, id: &str) -> Result<AssumptionRecord, Error> {
        let Ok(id) = AssumptionId::parse(id) else {
            return Err(not_found());
        };
        let a: Assumption = self.aggregates().load(&caller.org, id.as_str()).await?;
        a.record.ok_or_else(not_found)
    }

    /// Validates or invalidates an assumption; an invalidated one stays invalidated.
    pub async fn judge_assumption(
        &self,
        caller: &Caller,
        id: &str,
        verdict: Verdict,
    ) -> Result<AssumptionRecord, Error> {
        caller.require(Permission::Write)?;
        let now = self.clock().now();
        let command = match verdict {
            Verdict::Validated => AssumptionCommand::Validate { now },
            Verdict::Invalidated(reason) if reason.is_empty() => {
                return Err(Error::bad_request(
                    "invalidated_reason is required when invalidating an assumption",
                ))
            }
            Verdict::Invalidated(reason) => AssumptionCommand::Invalidate { reason, now },
        };
        let a = self.load_assumption(caller, id).await?;
        let actor = Actor::of(&caller.principal, None);
        match self
            .aggregates()
            .execute::<Assumption>(&caller.org, a.assumption_id.as_str(), command, &actor)
            .await
        {
            Ok(a) => a.record.ok_or_else(not_found),
            Err(CommandError::Rejected(AssumptionError::AlreadyInvalidated)) => Err(Error::new(
                ErrorCode::Conflict,
                "Assumption is already invalidated",
            )),
            Err(CommandError::Rejected(AssumptionError::NotFound)) => Err(not_found()),
            Err(CommandError::Rejected(e)) => Err(Error::internal(e)),
            Err(CommandError::Failed(e)) => Err(e),
        }
    }

    /// The caller's org's assumptions, newest first.
    pub async fn assumptions(
        &self,
        caller: &Caller,
        filter: &AssumptionFilter,
    ) -> Result<Vec<AssumptionRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let read = dashclaw_projections::read::assumptions::AssumptionFilter {
            action_id: filter.action_id.clone(),
            agent_id: filter.agent_id.clone(),
            validated: filter.validated,
        };
        let page = dashclaw_projections::read::Page {
            limit: filter.limit,
            offset: filter.offset,
        };
        Ok(
            dashclaw_projections::read::assumptions::page(self.pool(), &caller.org, &read, page)
                .await?,
        )
    }
}
