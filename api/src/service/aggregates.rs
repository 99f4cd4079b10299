//! Executes commands on aggregates: cqrs-es loads and handles, the ledger store persists.
//!
//! Unlike `CqrsFramework::execute`, this returns the aggregate's state after the command, so
//! a REST answer can be built from the command side (read-your-writes without waiting for a
//! projection), and it retries optimistic-lock conflicts against the fresh state, so racing
//! writers are settled by the aggregate's rules (exactly one outcome wins, the rest get the
//! domain's refusal).

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use dashclaw_domain::OrgId;
use dashclaw_store::LedgerRepository;

use super::error::{Error, ErrorCode};

/// How often a command is re-run after losing an optimistic-lock race.
const CONFLICT_RETRIES: usize = 16;

/// Who caused a change; recorded as event metadata.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub principal: String,
    pub agent_id: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The principal `principal`, acting for `agent_id` if known.
    pub fn of(principal: &str, agent_id: Option<&str>) -> Self {
        Self {
            principal: principal.to_owned(),
            agent_id: agent_id.map(str::to_owned),
            request_id: None,
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([("actor".to_owned(), self.principal.clone())]);
        if let Some(a) = &self.agent_id {
            m.insert("agent_id".to_owned(), a.clone());
        }
        if let Some(r) = &self.request_id {
            m.insert("request_id".to_owned(), r.clone());
        }
        m
    }
}

/// A command's failure: the domain refused it, or the infrastructure failed.
#[derive(Debug)]
pub enum CommandError<E> {
    Rejected(E),
    Failed(Error),
}

impl<E> From<Error> for CommandError<E> {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

fn infrastructure<E: std::error::Error>(e: AggregateError<E>) -> Error {
    match e {
        AggregateError::DatabaseConnectionError(cause) => {
            tracing::error!(error = %cause, "database error while executing a command");
            Error::db_unavailable()
        }
        AggregateError::UnexpectedError(cause)
            if matches!(
                cause.downcast_ref::<dashclaw_store::StoreError>(),
                Some(dashclaw_store::StoreError::CommitUnknown(_))
            ) =>
        {
            tracing::error!(error = %cause, "a command's commit was not confirmed");
            Error::commit_unknown()
        }
        AggregateError::AggregateConflict => {
            Error::new(ErrorCode::Conflict, "Concurrent update, retry")
        }
        other => Error::internal(other),
    }
}

/// The command side of every aggregate. Cheap to clone.
#[derive(Clone)]
pub struct Aggregates {
    repo: LedgerRepository,
}

impl Aggregates {
    pub fn new(repo: LedgerRepository) -> Self {
        Self { repo }
    }

    fn store<A: Aggregate>(&self) -> PersistedEventStore<LedgerRepository, A> {
        PersistedEventStore::new_event_store(self.repo.clone())
    }

    /// The current state of an aggregate (default when it has no events).
    pub async fn load<A: Aggregate>(&self, org: &OrgId, entity: &str) -> Result<A, Error> {
        let mut context = self
            .store::<A>()
            .load_aggregate(&org.stream_id(entity))
            .await
            .map_err(infrastructure)?;
        Ok(std::mem::take(context.aggregate()))
    }

    /// Handles `command` on a stream that is known to be new (its id was just minted from
    /// randomness), skipping the load. Should the id exist after all, the store refuses the
    /// append as a conflict.
    pub async fn create<A>(
        &self,
        org: &OrgId,
        entity: &str,
        command: A::Command,
        actor: &Actor,
    ) -> Result<A, CommandError<A::Error>>
    where
        A: Aggregate<Services = ()> + Clone,
    {
        let store = self.store::<A>();
        let mut context = EventStoreAggregateContext {
            aggregate_id: org.stream_id(entity),
            aggregate: A::default(),
            current_sequence: 0,
            current_snapshot: None,
        };
        let (after, events) = handle(&mut context, command).await?;
        store
            .commit(events, context, actor.metadata())
            .await
            .map_err(|e| naming::<A>(infrastructure(e), entity))?;
        Ok(after)
    }

    /// Handles `command` and appends its events; returns the state after them.
    pub async fn execute<A>(
        &self,
        org: &OrgId,
        entity: &str,
        command: A::Command,
        actor: &Actor,
    ) -> Result<A, CommandError<A::Error>>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        let stream = org.stream_id(entity);
        let store = self.store::<A>();
        for _ in 0..CONFLICT_RETRIES {
            let mut context = store
                .load_aggregate(&stream)
                .await
                .map_err(infrastructure)?;
            let (after, events) = handle(&mut context, command.clone()).await?;
            if events.is_empty() {
                return Ok(after);
            }
            match store.commit(events, context, actor.metadata()).await {
                Ok(_) => return Ok(after),
                Err(AggregateError::AggregateConflict) => continue,
                Err(e) => return Err(naming::<A>(infrastructure(e), entity).into()),
            }
        }
        Err(Error::new(
            ErrorCode::Conflict,
            "Too much contention on this entity, retry",
        )
        .into())
    }
}

/// A write whose commit is unknown names what it wrote, so the caller can look it up
/// (`GET /api/actions/:id`, the decision in `GET /api/guard`) before retrying.
fn naming<A: Aggregate>(e: Error, entity: &str) -> Error {
    if e.code != ErrorCode::CommitUnknown {
        return e;
    }
    let field = match A::TYPE {
        "Action" => "action_id",
        "GuardDecision" => "decision_id",
        _ => "id",
    };
    e.with("entity", A::TYPE).with(field, entity)
}

/// Runs the aggregate's `handle`; returns its state after the command and the new events.
async fn handle<A, C>(
    context: &mut C,
    command: A::Command,
) -> Result<(A, Vec<A::Event>), CommandError<A::Error>>
where
    A: Aggregate<Services = ()> + Clone,
    C: AggregateContext<A>,
{
    let sink = EventSink::default();
    context
        .aggregate()
        .handle(command, &(), &sink)
        .await
        .map_err(CommandError::Rejected)?;
    Ok((context.aggregate().clone(), sink.collect().await))
}
