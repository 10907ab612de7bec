//! The HTTP side of the contract the simulator uses outside Goose's users: probing for
//! optional features and creating groups before the load starts.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The feature answered as the contract says.
    Supported,
    /// The server does not serve it (404 or an unknown route).
    Missing(String),
    /// It is served but this call failed.
    Failed(String),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Supported => write!(f, "supported"),
            Probe::Missing(why) | Probe::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// An HTTP client for setup calls.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// `GET /v1/presence?users=ID`: 404 means the server lacks presence.
pub async fn probe_presence(client: &reqwest::Client, base: &str, token: &str, user: u64) -> Probe {
    let url = format!("{base}/v1/presence?users={user}");
    match client.get(&url).bearer_auth(token).send().await {
        Ok(r) if r.status().is_success() => Probe::Supported,
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
            Probe::Missing("GET /v1/presence answered 404".into())
        }
        Ok(r) => Probe::Failed(format!("GET /v1/presence answered {}", r.status())),
        Err(e) => Probe::Failed(format!("GET /v1/presence failed: {e}")),
    }
}

/// `POST /v1/groups {"name", "members"}` → (group id, conv). A 404 means the server
/// lacks groups.
pub async fn create_group(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
    members: &[u64],
) -> Result<(u64, String), Probe> {
    let url = format!("{base}/v1/groups");
    let r = client
        .post(&url)
        .bearer_auth(token)
        .json(&json!({"name": name, "members": members}))
        .send()
        .await
        .map_err(|e| Probe::Failed(format!("POST /v1/groups failed: {e}")))?;
    let status = r.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
    {
        return Err(Probe::Missing(format!(
            "POST /v1/groups answered {}",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        let text = r.text().await.unwrap_or_default();
        return Err(Probe::Failed(format!(
            "POST /v1/groups answered {status}: {text}"
        )));
    }
    let v: Value = r
        .json()
        .await
        .map_err(|e| Probe::Failed(format!("POST /v1/groups answer is not JSON: {e}")))?;
    let id = v["group"]
        .as_u64()
        .ok_or_else(|| Probe::Failed(format!("POST /v1/groups answer has no group id: {v}")))?;
    let conv = v["conv"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("g:{id}"));
    Ok((id, conv))
}

/// Waits until `GET /healthz` answers 200, or the timeout.
pub async fn wait_healthy(base: &str, timeout: Duration) -> Result<(), String> {
    let c = client();
    let deadline = tokio::time::Instant::now() + timeout;
    let url = format!("{base}/healthz");
    loop {
        match c.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("{url} answered {}", r.status()));
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("{url}: {e}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
