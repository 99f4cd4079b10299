//! The operator CLI: `dashclaw approvals`, `approve ID`, `deny ID`, talking to a running
//! server over HTTP with an admin key, through the same REST endpoints as everyone else
//! (`GET /api/actions?status=pending_approval`, `POST /api/approvals/:id`; the guard's
//! reasons come from the GraphQL `approvals` query).

use std::process::ExitCode;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::service::http_client::HttpClient;

/// How an operator command failed; each maps to a message and an exit code.
#[derive(Debug)]
pub enum OperatorError {
    /// No API key was given.
    MissingKey,
    /// The base URL does not parse.
    BadUrl(String),
    /// No HTTP answer (connection refused, timeout, DNS).
    Unreachable { url: String, cause: String },
    /// The server answered with an error.
    Refused {
        status: StatusCode,
        error: String,
        code: Option<String>,
    },
}

impl std::fmt::Display for OperatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingKey => write!(
                f,
                "no API key: set DASHCLAW_API_KEY (or pass --api-key) to an admin key of the org"
            ),
            Self::BadUrl(url) => write!(
                f,
                "DASHCLAW_BASE_URL {url:?} is not an http(s) URL (e.g. http://127.0.0.1:3000)"
            ),
            Self::Unreachable { url, cause } => write!(
                f,
                "cannot reach the dashclaw server at {url}: {cause} (is it running? check DASHCLAW_BASE_URL)"
            ),
            Self::Refused {
                status,
                error,
                code,
            } => match code {
                Some(code) => write!(f, "the server refused: {error} ({code}, HTTP {status})"),
                None => write!(f, "the server refused: {error} (HTTP {status})"),
            },
        }
    }
}

impl OperatorError {
    /// 1 when the server refused the request, 2 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Refused { .. } => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }
}

/// A client of one server with one key.
pub struct Operator {
    base: String,
    key: String,
    http: HttpClient,
}

impl Operator {
    pub fn new(base_url: &str, api_key: Option<&str>) -> Result<Self, OperatorError> {
        let key = api_key
            .filter(|k| !k.trim().is_empty())
            .ok_or(OperatorError::MissingKey)?;
        let base = base_url.trim_end_matches('/').to_owned();
        let parsed: Result<axum::http::Uri, _> = base.parse();
        match parsed {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http") | Some("https"))
                    && uri.host().is_some() => {}
            _ => return Err(OperatorError::BadUrl(base_url.to_owned())),
        }
        Ok(Self {
            base,
            key: key.to_owned(),
            // The operator names the server; any address is fine.
            http: HttpClient::new(true, Duration::from_secs(30)),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, OperatorError> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("x-api-key", &self.key)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|_| OperatorError::BadUrl(self.base.clone()))?;
        let (status, body) =
            self.http
                .send(request)
                .await
                .map_err(|cause| OperatorError::Unreachable {
                    url: self.base.clone(),
                    cause,
                })?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = json["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            return Err(OperatorError::Refused {
                status,
                error: if error.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    error
                },
                code: json["code"].as_str().map(str::to_owned),
            });
        }
        Ok(json)
    }

    /// The pending approvals, each action row with `reasons` (from its guard decision).
    pub async fn pending(&self) -> Result<Vec<Value>, OperatorError> {
        let listed = self
            .call(
                Method::GET,
                "/api/actions?status=pending_approval&limit=200",
                None,
            )
            .await?;
        let mut actions: Vec<Value> = listed["actions"].as_array().cloned().unwrap_or_default();
        // The reasons live on the guard decision; one GraphQL query brings them all.
        let query = json!({"query": "{ approvals { actionId guardDecision { reasons matchedPolicies } } }"});
        let reasons = self
            .call(Method::POST, "/graphql", Some(query))
            .await
            .ok()
            .and_then(|r| r["data"]["approvals"].as_array().cloned())
            .unwrap_or_default();
        for action in &mut actions {
            let found = reasons
                .iter()
                .find(|r| r["actionId"] == action["action_id"])
                .map(|r| r["guardDecision"].clone());
            if let (Some(found), Value::Object(map)) = (found, action) {
                map.insert("reasons".into(), found["reasons"].clone());
                map.insert("matched_policies".into(), found["matchedPolicies"].clone());
            }
        }
        Ok(actions)
    }

    /// Approves (`allow`) or denies an action; returns the updated row.
    pub async fn decide(
        &self,
        id: &str,
        allow: bool,
        reason: Option<&str>,
    ) -> Result<Value, OperatorError> {
        let path = format!("/api/approvals/{}", encode_segment(id));
        let body = json!({
            "decision": if allow { "allow" } else { "deny" },
            "reasoning": reason,
        });
        let answer = self.call(Method::POST, &path, Some(body)).await?;
        Ok(answer["action"].clone())
    }
}

/// Percent-encodes a path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prints the approvals queue for a human.
pub fn print_pending(actions: &[Value]) {
    if actions.is_empty() {
        println!("no actions pending approval");
        return;
    }
    println!("{} action(s) pending approval:", actions.len());
    for a in actions {
        println!(
            "{}  risk {}  agent {}  {}: {}",
            a["action_id"].as_str().unwrap_or("?"),
            a["risk_score"],
            a["agent_id"].as_str().unwrap_or("?"),
            a["action_type"].as_str().unwrap_or("?"),
            a["declared_goal"].as_str().unwrap_or(""),
        );
        let reasons: Vec<&str> = a["reasons"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !reasons.is_empty() {
            println!("    reasons: {}", reasons.join("; "));
        }
        if let Some(expires) = a["approval_expires_at"].as_str() {
            println!("    expires: {expires}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_error_and_code() {
        let e = OperatorError::Refused {
            status: StatusCode::BAD_REQUEST,
            error: "Action is not pending approval".into(),
            code: Some("NOT_PENDING_APPROVAL".into()),
        };
        assert_eq!(
            e.to_string(),
            "the server refused: Action is not pending approval (NOT_PENDING_APPROVAL, HTTP 400 Bad Request)"
        );
        assert!(Operator::new("http://127.0.0.1:1", None).is_err());
        assert!(Operator::new("ftp://x", Some("k")).is_err());
        assert_eq!(encode_segment("act_a/b c"), "act_a%2Fb%20c");
    }
}
