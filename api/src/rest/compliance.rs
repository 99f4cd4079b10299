//! `GET /api/compliance/export`: the caller's org's events in a time range as a streamed JSON
//! Lines body (each line one event's exact entry), ending with one line `{"manifest": …}`
//! holding the signed manifest (`docs/evidence-format.md`); the same as `dashclaw export`.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use dashclaw_events::export::Manifest;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use utoipa::IntoParams;

use crate::extract::Params;
use crate::service::compliance::ExportRange;
use crate::service::{Caller, Error};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/compliance/export", get(export))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// Events recorded at or after this time (RFC 3339; default: the first).
    from: Option<DateTime<Utc>>,
    /// Events recorded before this time (RFC 3339; default: up to now).
    to: Option<DateTime<Utc>>,
}

/// The last line of the stream.
#[derive(Serialize)]
#[serde(untagged)]
enum ExportEnd {
    /// `{"manifest": …}`.
    Done { manifest: Box<Manifest> },
    /// The error envelope, when the export failed midway.
    Failed(Error),
}

/// A compliance export of the org, streamed: one event entry per line, then
/// `{"manifest": <signed manifest>}` (or `{"error", "code"}` if the export failed midway).
#[utoipa::path(get, path = "/api/compliance/export", tag = "integrity",
    params(ExportQuery),
    responses((status = 200, description = "JSON Lines: the events, then the manifest",
        content_type = "application/x-ndjson", body = String)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ExportQuery>,
) -> Result<Response, Error> {
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(Error::validation(vec!["from must not be after to".into()]));
        }
    }
    let range = ExportRange {
        from: q.from,
        to: q.to,
    };
    let (lines, rx) = mpsc::channel::<Vec<u8>>(4);
    let (last, last_rx) = mpsc::channel::<Vec<u8>>(1);
    tokio::spawn(async move {
        let end = match state
            .service
            .compliance_export(&caller, range, &lines)
            .await
        {
            Ok(manifest) => ExportEnd::Done {
                manifest: Box::new(manifest),
            },
            Err(error) => ExportEnd::Failed(error),
        };
        drop(lines);
        let mut line = serde_json::to_vec(&end).unwrap_or_default();
        line.push(b'\n');
        let _ = last.send(line).await;
    });
    let body = ReceiverStream::new(rx)
        .chain(ReceiverStream::new(last_rx))
        .map(|chunk| Ok::<_, Infallible>(Bytes::from(chunk)));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}
