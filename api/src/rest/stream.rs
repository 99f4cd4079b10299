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
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::extract::Params;
use crate::service::tail::LiveEvent;
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

#[derive(Deserialize)]
struct StreamQuery {
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

async fn stream(
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
    // Subscribe before replaying, so nothing falls between the replay and the live feed.
    let mut subscription = state.service.tail().subscribe(&caller.org);
    let replayed = match after {
        Some(after) => {
            state
                .service
                .tail()
                .replay(&caller.org, after, REPLAY_LIMIT)
                .await?
        }
        None => Vec::new(),
    };
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    let padding = ":".repeat(PAD);
    let org = caller.org.clone();
    tokio::spawn(async move {
        let mut sent = after.unwrap_or(0);
        let count = replayed.len();
        for event in &replayed {
            sent = sent.max(event.ledger_seq);
            for frame in frames(event, &padding) {
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        }
        let connected = Event::default().event("connected").data(
            json!({
                "status": "ok", "orgId": org.as_str(), "backend": "postgres",
                "realtimeStatus": "healthy", "replayed": count, "lastEventId": last,
                "replayError": null,
            })
            .to_string(),
        );
        for frame in [connected, Event::default().comment(&padding)] {
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
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
            if event.org != org || event.ledger_seq <= sent {
                continue;
            }
            sent = event.ledger_seq;
            for frame in frames(&event, &padding) {
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        }
    });
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

/// How many live subscriptions (SSE and GraphQL) of the caller's org this node holds: lets a
/// test or an operator see that a waiting agent is connected. Other orgs are not counted.
async fn status(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    Json(json!({ "subscribers": state.service.tail().subscribers_of(&caller.org) }))
}
