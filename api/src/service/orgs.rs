//! Organizations (contract 17; the SDK's org methods): an org's profile (name and slug,
//! `OrgProfileChanged` on the org's own chain), creating an org with its first admin key (the
//! bootstrap operator only), renaming one, and listing its keys (never their secrets). An org
//! admin sees only its own org; any other org id is not found.

use dashclaw_domain::action::OPERATOR;
use dashclaw_domain::api_key::Role;
use dashclaw_domain::org_settings::{OrgProfile, OrgSettings, OrgSettingsCommand, ORG_SETTINGS_ID};
use dashclaw_domain::OrgId;

use super::keys::{list_keys, KeyAdmin};
use super::{Caller, Error, ErrorCode, Service};
use dashclaw_projections::governance::KeyListing;

/// The longest org name.
pub const NAME_MAX: usize = 200;

/// An org as listed: its id and profile (absent for an org created before profiles, such as
/// the default org, until an admin names it).
#[derive(Debug, Clone)]
pub struct OrgView {
    pub id: OrgId,
    pub profile: Option<OrgProfile>,
}

/// A new org and its first admin key (shown once).
#[derive(Debug, Clone)]
pub struct CreatedOrg {
    pub org: OrgView,
    pub admin_key: String,
}

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Organization not found")
}

/// `slug` as an org id: `org_<slug>`; slugs are `[a-z0-9][a-z0-9-]{0,47}`.
fn org_of_slug(slug: &str) -> Result<OrgId, Error> {
    let well_formed = !slug.is_empty()
        && slug.len() <= 48
        && slug.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Err(Error::validation(vec![
            "slug must be 1-48 characters of a-z, 0-9 and -, starting with a letter or digit"
                .into(),
        ]));
    }
    OrgId::new(format!("org_{slug}")).map_err(|e| Error::validation(vec![e.to_string()]))
}

fn check_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(Error::validation(vec![format!(
            "name must be 1-{NAME_MAX} characters"
        )]));
    }
    Ok(name.to_owned())
}

impl Service {
    async fn org_view(&self, org: &OrgId) -> Result<OrgView, Error> {
        let settings: OrgSettings = self.aggregates().load(org, ORG_SETTINGS_ID).await?;
        Ok(OrgView {
            id: org.clone(),
            profile: settings.profile,
        })
    }

    /// The org `id` if the caller may see it (an admin of it, or the bootstrap operator).
    async fn visible_org(&self, caller: &Caller, id: &str) -> Result<OrgId, Error> {
        caller.require_admin("Admin access required")?;
        let org = OrgId::new(id).map_err(|_| not_found())?;
        if org != caller.org && caller.principal != OPERATOR {
            return Err(not_found());
        }
        let known = dashclaw_store::chain::head(self.pool(), &org).await?.size > 0;
        if !known {
            return Err(not_found());
        }
        Ok(org)
    }

    /// The orgs the caller sees: its own (an admin), or every org (the bootstrap operator).
    pub async fn orgs(&self, caller: &Caller) -> Result<Vec<OrgView>, Error> {
        caller.require_admin("Admin access required")?;
        let ids = if caller.principal == OPERATOR {
            dashclaw_store::chain::orgs(self.pool()).await?
        } else {
            vec![caller.org.clone()]
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            out.push(self.org_view(id).await?);
        }
        Ok(out)
    }

    /// One org (see [`Service::orgs`] for who sees which).
    pub async fn org(&self, caller: &Caller, id: &str) -> Result<OrgView, Error> {
        let org = self.visible_org(caller, id).await?;
        self.org_view(&org).await
    }

    /// Creates an org named `name` with id `org_<slug>` and its first admin key (the
    /// bootstrap operator only; 409 if the slug is taken).
    pub async fn create_org(
        &self,
        caller: &Caller,
        name: &str,
        slug: &str,
    ) -> Result<CreatedOrg, Error> {
        if caller.principal != OPERATOR {
            return Err(Error::forbidden(
                "Only the bootstrap operator can create organizations",
            ));
        }
        let name = check_name(name)?;
        let org = org_of_slug(slug)?;
        let command = OrgSettingsCommand::Create {
            name,
            slug: slug.to_owned(),
            actor: caller.principal.clone(),
            now: self.clock().now(),
        };
        let settings = self.change_settings(caller, &org, command).await?;
        let keys = KeyAdmin::new(self.aggregates(), self.projections(), self.clock().now());
        let admin_key = keys
            .issue(&org, Role::Admin, "initial admin", &caller.principal)
            .await?;
        Ok(CreatedOrg {
            org: OrgView {
                id: org,
                profile: settings.profile,
            },
            admin_key,
        })
    }

    /// Renames the org `id` (an admin of it, or the bootstrap operator).
    pub async fn rename_org(
        &self,
        caller: &Caller,
        id: &str,
        name: &str,
    ) -> Result<OrgView, Error> {
        let org = self.visible_org(caller, id).await?;
        let command = OrgSettingsCommand::Rename {
            name: check_name(name)?,
            slug_if_new: org.to_string(),
            actor: caller.principal.clone(),
            now: self.clock().now(),
        };
        let settings = self.change_settings(caller, &org, command).await?;
        Ok(OrgView {
            id: org,
            profile: settings.profile,
        })
    }

    /// The org `id`'s API keys, without their hashes.
    pub async fn org_keys(&self, caller: &Caller, id: &str) -> Result<Vec<KeyListing>, Error> {
        let org = self.visible_org(caller, id).await?;
        self.projections().catch_up(&org).await?;
        list_keys(self.pool(), &org).await
    }
}
