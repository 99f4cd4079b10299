//! Organizations (the SDK's `get_org`, `create_org`, `get_org_by_id`, `update_org`,
//! `get_org_keys`): `GET/POST /api/orgs`, `GET/PATCH /api/orgs/:id`, `GET /api/orgs/:id/keys`.
//! Admin keys see their own org; only the bootstrap operator creates orgs and sees them all.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::{Body, Id};
use crate::input::fields::{object, Fields};
use crate::service::orgs::{OrgView, NAME_MAX};
use crate::service::{Caller, Error};
use crate::state::AppState;
use crate::wire::KeyRow;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orgs", get(list).post(create))
        .route("/api/orgs/{id}", get(read).patch(update))
        .route("/api/orgs/{id}/keys", get(keys))
}

/// An organization.
#[derive(Serialize, ToSchema)]
pub struct OrgRow {
    pub id: String,
    /// The org's id until it is named.
    pub name: String,
    pub slug: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<OrgView> for OrgRow {
    fn from(o: OrgView) -> Self {
        let id = o.id.to_string();
        match o.profile {
            Some(p) => Self {
                id,
                name: p.name,
                slug: p.slug,
                created_at: Some(p.created_at),
                updated_at: Some(p.updated_at),
            },
            None => Self {
                name: id.clone(),
                slug: id.clone(),
                id,
                created_at: None,
                updated_at: None,
            },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrgList {
    pub orgs: Vec<OrgRow>,
}

#[derive(Serialize, ToSchema)]
pub struct OrgBody {
    pub org: OrgRow,
}

/// `POST /api/orgs` answered: the org and its first admin key.
#[derive(Serialize, ToSchema)]
pub struct CreatedOrgBody {
    pub org: OrgRow,
    /// The first admin API key of the org (shown only now; only its SHA-256 is stored).
    pub api_key: String,
}

/// `POST /api/orgs`.
#[derive(ToSchema)]
#[schema(example = json!({"name": "Acme Corp", "slug": "acme-corp"}))]
pub struct CreateOrgBody {
    pub name: String,
    /// `[a-z0-9][a-z0-9-]{0,47}`; the org's id is `org_<slug>`.
    pub slug: String,
}

/// `PATCH /api/orgs/:id`.
#[derive(ToSchema)]
#[schema(example = json!({"name": "Acme Corp v2"}))]
pub struct UpdateOrgBody {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrgKeys {
    pub keys: Vec<KeyRow>,
}

/// The caller's org (admin keys), or every org (the bootstrap operator).
#[utoipa::path(get, path = "/api/orgs", tag = "orgs",
    responses((status = 200, description = "The orgs", body = OrgList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<OrgList>, Error> {
    let orgs = state.service.orgs(&caller).await?;
    Ok(Json(OrgList {
        orgs: orgs.into_iter().map(OrgRow::from).collect(),
    }))
}

/// Create an org with its first admin key (the bootstrap operator only).
#[utoipa::path(post, path = "/api/orgs", tag = "orgs", request_body = CreateOrgBody,
    responses((status = 201, description = "Created", body = CreatedOrgBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<CreatedOrgBody>), Error> {
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let name = f.required_string("name", NAME_MAX);
    let slug = f.required_string("slug", 48);
    f.finish()?;
    let created = state
        .service
        .create_org(
            &caller,
            &name.unwrap_or_default(),
            &slug.unwrap_or_default(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedOrgBody {
            org: created.org.into(),
            api_key: created.admin_key,
        }),
    ))
}

/// One org (an admin of it, or the bootstrap operator; any other id is not found).
#[utoipa::path(get, path = "/api/orgs/{id}", tag = "orgs", params(("id" = String, Path)),
    responses((status = 200, description = "The org", body = OrgBody)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<OrgBody>, Error> {
    let org = state.service.org(&caller, &id).await?;
    Ok(Json(OrgBody { org: org.into() }))
}

/// Rename an org (an `OrgProfileChanged` event; the slug and id never change).
#[utoipa::path(patch, path = "/api/orgs/{id}", tag = "orgs", params(("id" = String, Path)),
    request_body = UpdateOrgBody,
    responses((status = 200, description = "The org", body = OrgBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<OrgBody>, Error> {
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let name = f.required_string("name", NAME_MAX);
    f.finish()?;
    let org = state
        .service
        .rename_org(&caller, &id, &name.unwrap_or_default())
        .await?;
    Ok(Json(OrgBody { org: org.into() }))
}

/// The org's API keys, without their secrets.
#[utoipa::path(get, path = "/api/orgs/{id}/keys", tag = "orgs", params(("id" = String, Path)),
    responses((status = 200, description = "The keys", body = OrgKeys)))]
pub(crate) async fn keys(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<OrgKeys>, Error> {
    let keys = state.service.org_keys(&caller, &id).await?;
    Ok(Json(OrgKeys {
        keys: keys.iter().map(KeyRow::from).collect(),
    }))
}
