//! `GET /api/stream`: server-sent events of the caller's org, fed from the ledger tail (so
//! events from every node arrive), with heartbeats and `Last-Event-ID` replay from the ledger.
//!
//! The official Python SDK reads the stream with blocking 4 KiB reads, so a small frame would
//! sit in its buffer until 4 KiB more arrived (its 5 s poll then wins). Every frame is
//! therefore followed by a 4 KiB comment, which SSE parsers ignore, pushing the frame
//! through at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};

use crate::extract::Params;
use dashclaw_domain::OrgId;

use crate::service::tail::{LiveEvent, Subscription};
use crate::service::Caller;
use crate::service::Error;
use crate::state::AppState;

/// A stream is closed after this long; clients reconnect with `Last-Event-ID`.
const MAX_LIFE: Duration = Duration::from_secs(30 * 60);
/// At most this many missed events are replayed.
const REPLAY_LIMIT: i64 = 200;
/// Bytes of padding after each frame (the SDK's read size).
const PAD: usize = 4096;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/stream", get(stream))
        .route("/api/stream/status", get(status))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Replay the events after this ledger sequence (the `Last-Event-ID` header wins).
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

fn frames(event: &LiveEvent, padding: &str) -> [Event; 2] {
    let (name, data) = crate::wire::live_event(event);
    [
        Event::default()
            .id(event.ledger_seq.to_string())
            .event(name)
            .data(data.to_string()),
        Event::default().comment(padding),
    ]
}

/// The `connected` frame a stream starts with, after the replayed events.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connected {
    /// Always "ok".
    pub status: &'static str,
    pub org_id: String,
    /// Always "postgres".
    pub backend: &'static str,
    /// Always "healthy".
    pub realtime_status: &'static str,
    /// How many missed events were replayed.
    pub replayed: usize,
    pub last_event_id: Option<String>,
    /// Always null.
    pub replay_error: Option<String>,
}

/// Server-sent events of the org: `action.created`, `action.updated`,
/// `guard.decision.created`, `policy.updated`, `signal.detected` (each with its ledger
/// sequence as the event id), then `connected`; heartbeats as comments.
#[utoipa::path(get, path = "/api/stream", tag = "stream", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Replay the events after this ledger sequence")),
    responses((status = 200, description = "An event stream; each frame's data is a JSON row",
        content_type = "text/event-stream", body = String)))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<StreamQuery>,
) -> Result<impl IntoResponse, Error> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.last_event_id);
    let after = last.as_deref().and_then(|s| s.trim().parse::<u64>().ok());
    let (subscription, replayed) = state.service.follow(&caller, after, REPLAY_LIMIT).await?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    let connected = Connected {
        status: "ok",
        org_id: caller.org.as_str().to_owned(),
        backend: "postgres",
        realtime_status: "healthy",
        replayed: replayed.len(),
        last_event_id: last,
        replay_error: None,
    };
    let start = Start {
        org: caller.org.clone(),
        after: after.unwrap_or(0),
        replayed,
        connected,
    };
    tokio::spawn(feed(tx, subscription, start));
    let sse = Sse::new(ReceiverStream::new(rx)).keep_alive(
        KeepAlive::new()
            .interval(state.http.heartbeat)
            .text("heartbeat"),
    );
    Ok((
        [
            (header::CACHE_CONTROL, "no-cache, no-transform"),
            (header::CONNECTION, "keep-alive"),
        ],
        sse,
    ))
}

/// What a stream starts with: the missed events to replay, then the `connected` frame.
struct Start {
    org: OrgId,
    after: u64,
    replayed: Vec<LiveEvent>,
    connected: Connected,
}

/// Sends the replayed events, `connected`, then the live events of the org (each once)
/// until the client leaves or the stream's life ends.
async fn feed(
    tx: mpsc::Sender<Result<Event, Infallible>>,
    mut subscription: Subscription,
    start: Start,
) {
    let padding = ":".repeat(PAD);
    let send = |frames: Vec<Event>| {
        let tx = tx.clone();
        async move {
            for frame in frames {
                if tx.send(Ok(frame)).await.is_err() {
                    return false;
                }
            }
            true
        }
    };
    let mut sent = start.after;
    for event in &start.replayed {
        sent = sent.max(event.ledger_seq);
        if !send(frames(event, &padding).into()).await {
            return;
        }
    }
    let connected = Event::default()
        .event("connected")
        .json_data(&start.connected)
        .unwrap_or_default();
    if !send(vec![connected, Event::default().comment(&padding)]).await {
        return;
    }
    let deadline = tokio::time::sleep(MAX_LIFE);
    tokio::pin!(deadline);
    loop {
        let event: Arc<LiveEvent> = tokio::select! {
            received = subscription.receiver.recv() => match received {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "SSE subscriber lagged; it should reconnect with Last-Event-ID");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tx.closed() => return,
            _ = &mut deadline => return,
        };
        if event.org != start.org || event.ledger_seq <= sent {
            continue;
        }
        sent = event.ledger_seq;
        if !send(frames(&event, &padding).into()).await {
            return;
        }
    }
}

/// How many live subscriptions (SSE and GraphQL) of the caller's org this node holds: lets a
/// test or an operator see that a waiting agent is connected. Other orgs are not counted.
#[utoipa::path(get, path = "/api/stream/status", tag = "stream",
    responses((status = 200, description = "The org's live subscriptions on this node", body = StreamStatus)))]
pub(crate) async fn status(State(state): State<AppState>, caller: Caller) -> Json<StreamStatus> {
    Json(StreamStatus {
        subscribers: state.service.tail().subscribers_of(&caller.org),
    })
}

/// `GET /api/stream/status`.
#[derive(Serialize, ToSchema)]
pub struct StreamStatus {
    pub subscribers: usize,
}
