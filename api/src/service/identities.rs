//! Agent identities (contract 1.6 and 17): an agent asks to be paired with its public key
//! (`POST /api/pairings`), an admin approves within 15 minutes and the key becomes the agent's
//! registered identity; an admin may also register a key directly. Every step is an event.
//! (Verifying the identity tokens agents sign with these keys is not built yet:
//! `docs/sdk-surface.md` says what the guard records meanwhile.)

use base64::Engine;
use dashclaw_domain::identity::{
    identity_entity, AgentIdentity, IdentityCommand, IdentityError, IdentityRecord, Pairing,
    PairingCommand, PairingError, PairingRecord, PairingStatus, ALGORITHMS, PAIRING_TTL,
};
use dashclaw_domain::ids::PairingId;
use dashclaw_projections::read::{entities, Page};
use serde_json::json;

use super::aggregates::{Actor, CommandError};
use super::{random, Caller, Error, ErrorCode, Permission, Service};

/// A key offered for an agent.
#[derive(Clone, Debug)]
pub struct OfferedKey {
    pub agent_id: String,
    pub agent_name: Option<String>,
    /// SPKI PEM.
    pub public_key: String,
    pub algorithm: String,
}

/// What is wrong with an offered key, if anything: a PEM `PUBLIC KEY` block whose body is
/// base64 DER (a SEQUENCE), for a known algorithm.
pub fn key_problems(key: &OfferedKey) -> Vec<String> {
    let mut problems = Vec::new();
    if !ALGORITHMS.contains(&key.algorithm.as_str()) {
        problems.push(format!(
            "algorithm must be one of: {}",
            ALGORITHMS.join(", ")
        ));
    }
    let pem = key.public_key.trim();
    let body = pem
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PUBLIC KEY-----"));
    let der = body.and_then(|b| {
        let b64: String = b.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    });
    if !der.is_some_and(|d| d.len() >= 32 && d[0] == 0x30) {
        problems.push(
            "public_key must be a PEM public key (-----BEGIN PUBLIC KEY----- ... SubjectPublicKeyInfo)"
                .into(),
        );
    }
    problems
}

fn pairing_not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Pairing not found")
}

impl Service {
    /// An agent asks to be paired with its key; an admin approves within 15 minutes.
    pub async fn request_pairing(
        &self,
        caller: &Caller,
        key: OfferedKey,
    ) -> Result<PairingRecord, Error> {
        caller.require(Permission::Write)?;
        let problems = key_problems(&key);
        if !problems.is_empty() {
            return Err(Error::validation(problems));
        }
        let now = self.clock().now();
        let id = PairingId::random(random()?);
        let record = PairingRecord {
            pairing_id: id.clone(),
            agent_id: key.agent_id.clone(),
            agent_name: key.agent_name,
            public_key: key.public_key.trim().to_owned() + "\n",
            algorithm: key.algorithm,
            status: PairingStatus::Pending,
            requested_by: caller.principal.clone(),
            created_at: now,
            expires_at: now + PAIRING_TTL,
            approved_by: None,
            approved_at: None,
        };
        let actor = Actor::of(&caller.principal, Some(&key.agent_id));
        let pairing = self
            .aggregates()
            .create::<Pairing>(
                &caller.org,
                id.as_str(),
                PairingCommand::Request(Box::new(record)),
                &actor,
            )
            .await
            .map_err(|e| match e {
                CommandError::Failed(e) => e,
                CommandError::Rejected(e) => Error::internal(e),
            })?;
        pairing.record.ok_or_else(pairing_not_found)
    }

    /// A pairing of the caller's org, its status as of now.
    pub async fn pairing(&self, caller: &Caller, id: &str) -> Result<PairingRecord, Error> {
        let Ok(id) = PairingId::parse(id) else {
            return Err(pairing_not_found());
        };
        let p: Pairing = self.aggregates().load(&caller.org, id.as_str()).await?;
        let mut record = p.record.ok_or_else(pairing_not_found)?;
        record.status = record.status_at(self.clock().now());
        Ok(record)
    }

    /// An admin approves a pending pairing: the key becomes the agent's identity.
    pub async fn approve_pairing(&self, caller: &Caller, id: &str) -> Result<PairingRecord, Error> {
        caller.require_admin("Admin access required")?;
        let current = self.pairing(caller, id).await?;
        let now = self.clock().now();
        let actor = Actor::of(&caller.principal, Some(&current.agent_id));
        let command = PairingCommand::Approve {
            by: caller.principal.clone(),
            now,
        };
        let pairing = self
            .aggregates()
            .execute::<Pairing>(&caller.org, current.pairing_id.as_str(), command, &actor)
            .await
            .map_err(|e| match e {
                CommandError::Rejected(PairingError::Expired) => {
                    Error::new(ErrorCode::ApprovalExpired, "Pairing expired")
                }
                CommandError::Rejected(PairingError::AlreadyApproved) => {
                    Error::new(ErrorCode::Conflict, "Pairing is already approved")
                }
                CommandError::Rejected(PairingError::NotFound) => pairing_not_found(),
                CommandError::Rejected(e) => Error::internal(e),
                CommandError::Failed(e) => e,
            })?;
        let record = pairing.record.ok_or_else(pairing_not_found)?;
        let key = OfferedKey {
            agent_id: record.agent_id.clone(),
            agent_name: record.agent_name.clone(),
            public_key: record.public_key.clone(),
            algorithm: record.algorithm.clone(),
        };
        self.register_key(caller, key, format!("pairing:{}", record.pairing_id))
            .await?;
        Ok(record)
    }

    /// An admin registers (or replaces) an agent's key.
    pub async fn register_identity(
        &self,
        caller: &Caller,
        key: OfferedKey,
    ) -> Result<IdentityRecord, Error> {
        caller.require_admin("Admin access required")?;
        let problems = key_problems(&key);
        if !problems.is_empty() {
            return Err(Error::validation(problems));
        }
        self.register_key(caller, key, "admin".into()).await
    }

    async fn register_key(
        &self,
        caller: &Caller,
        key: OfferedKey,
        via: String,
    ) -> Result<IdentityRecord, Error> {
        let entity = identity_entity(&key.agent_id);
        let actor = Actor::of(&caller.principal, Some(&key.agent_id));
        let command = IdentityCommand::Register {
            agent_id: key.agent_id,
            public_key: key.public_key.trim().to_owned() + "\n",
            algorithm: key.algorithm,
            by: caller.principal.clone(),
            via,
            now: self.clock().now(),
        };
        match self
            .aggregates()
            .execute::<AgentIdentity>(&caller.org, &entity, command, &actor)
            .await
        {
            Ok(identity) => identity
                .record
                .ok_or_else(|| Error::internal("identity missing")),
            Err(CommandError::Rejected(IdentityError::Unchanged)) => {
                let identity: AgentIdentity = self.aggregates().load(&caller.org, &entity).await?;
                identity
                    .record
                    .ok_or_else(|| Error::internal("identity missing"))
            }
            Err(CommandError::Failed(e)) => Err(e),
        }
    }

    /// The caller's org's registered agent identities, most recently changed first.
    pub async fn identities(&self, caller: &Caller) -> Result<Vec<IdentityRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let found: Vec<AgentIdentity> =
            entities::page(self.pool(), &caller.org, &json!({}), Page::first(1000)).await?;
        Ok(found.into_iter().filter_map(|i| i.record).collect())
    }
}
