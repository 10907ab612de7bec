//! The HTTP routes: the WebSocket upgrade, the pull-model equivalents of every frame, long
//! polling, health. Every error answers `{"error": {"code", "message"}}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{AuthError, Identity, now_secs};
use crate::error::{ApiError, Code};
use crate::model::{ClientMsgId, ConvId, DeviceId, Target, UserId, parse_user};
use crate::protocol::SentOut;
use crate::service::{GroupOut, MAX_WAIT_SECS, Service};

type Svc = State<Arc<Service>>;

/// The response header that names the node which answered (every response carries it):
/// behind a load balancer, a client or a load generator learns where it landed.
pub const NODE_HEADER: &str = "x-chat-node";

/// The router of the whole server.
pub fn router(svc: Arc<Service>) -> Router {
    // The node name is checked at start (letters, digits, `-`, `_`), so it is a valid
    // header value; a name that were not would only leave the header out.
    let node = axum::http::HeaderValue::from_str(&svc.config().node).ok();
    let mut routes = Router::new();
    if svc.config().dev_login {
        routes = routes.route("/v1/dev/token", post(dev_token));
    }
    routes
        .route("/", get(crate::web::index))
        .route("/web/{*path}", get(crate::web::file))
        .route("/healthz", get(get_health))
        .route("/v1/cluster", get(get_cluster))
        .route("/v1/ws", get(ws_upgrade))
        .route("/v1/messages", post(post_message))
        .route("/v1/sync", get(get_sync))
        .route("/v1/conversations", get(get_conversations))
        .route("/v1/conversations/{conv}/messages", get(get_history))
        .route("/v1/ack", post(post_ack))
        .route("/v1/read", post(post_read))
        .route("/v1/groups", post(post_group))
        .route("/v1/groups/{id}", get(get_group))
        .route("/v1/groups/{id}/members", post(post_member))
        .route("/v1/groups/{id}/members/{user}", delete(delete_member))
        .route("/v1/presence", get(get_presence))
        .route("/v1/devices/{device}/push", put(put_push))
        .route("/metrics", get(get_metrics))
        .fallback(|| async { ApiError::new(Code::NotFound, "no such route") })
        .layer(axum::middleware::map_response(move |mut res: Response| {
            let node = node.clone();
            async move {
                if let Some(v) = node {
                    res.headers_mut().insert(NODE_HEADER, v);
                }
                res
            }
        }))
        .with_state(svc)
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Authed(pub Identity);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

impl FromRequestParts<Arc<Service>> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, svc: &Arc<Service>) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(AuthError::Missing)?;
        Ok(Authed(svc.verify(token)?))
    }
}

/// A JSON body whose rejections answer in the contract's error format.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(Code::TooLarge, "request body too large"))
            }
            Err(rej) => Err(ApiError::bad_request(json_problem(&rej))),
        }
    }
}

fn json_problem(rej: &JsonRejection) -> String {
    format!("malformed request body: {}", rej.body_text())
}

/// Query parameters whose rejections answer in the contract's error format.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|rej: QueryRejection| {
                ApiError::bad_request(format!("bad query: {}", rej.body_text()))
            })
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `GET /v1/ws`: the token comes in the header or, for browsers, as `?token=`; a bad one
/// answers 401 before any upgrade.
async fn ws_upgrade(
    State(svc): Svc,
    Params(q): Params<TokenQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = bearer(&headers).map(str::to_owned).or(q.token);
    let who = match token.ok_or(AuthError::Missing).and_then(|t| svc.verify(&t)) {
        Ok(who) => who,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rej) => {
            return ApiError::bad_request(format!("not a WebSocket upgrade: {}", rej.body_text()))
                .into_response();
        }
    };
    let c = svc.config();
    upgrade
        .read_buffer_size(c.ws_read_buffer_bytes)
        .write_buffer_size(c.ws_write_buffer_bytes)
        .max_message_size(c.max_frame_bytes)
        .max_frame_size(c.max_frame_bytes)
        .on_upgrade(move |socket| crate::ws::session(socket, svc, who))
}

/// The body of `POST /v1/messages`. Public (its fields are not) so that the hostile-input
/// tests and the fuzz bench can decode bodies through [`JsonBody`] as the route does.
#[derive(Deserialize)]
pub struct SendBody {
    id: ClientMsgId,
    to: Target,
    body: String,
}

async fn post_message(
    State(svc): Svc,
    Authed(who): Authed,
    JsonBody(b): JsonBody<SendBody>,
) -> Result<Json<SentOut>, ApiError> {
    Ok(Json(svc.send(&who, b.id, b.to, b.body, None).await?))
}

#[derive(Deserialize)]
struct SyncQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u64>,
    #[serde(default)]
    wait: u64,
}

async fn get_sync(
    State(svc): Svc,
    Authed(who): Authed,
    Params(q): Params<SyncQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if q.wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request(format!(
            "wait must be between 0 and {MAX_WAIT_SECS} seconds"
        )));
    }
    let out = svc
        .sync_wait(&who, q.after, q.limit, Duration::from_secs(q.wait))
        .await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<u64>,
}

async fn get_conversations(
    State(svc): Svc,
    Authed(who): Authed,
    Params(q): Params<LimitQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(svc.conversations(&who, q.limit).await?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<u64>,
}

async fn get_history(
    State(svc): Svc,
    Authed(who): Authed,
    Path(conv): Path<String>,
    Params(q): Params<HistoryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let conv: ConvId = conv.parse()?;
    Ok(Json(svc.history(&who, conv, q.before, q.limit).await?))
}

/// The body of `POST /v1/ack` and `POST /v1/read`; public like [`SendBody`].
#[derive(Deserialize)]
pub struct MarkBody {
    conv: ConvId,
    seq: u64,
}

async fn post_ack(
    State(svc): Svc,
    Authed(who): Authed,
    JsonBody(b): JsonBody<MarkBody>,
) -> Result<StatusCode, ApiError> {
    svc.ack(&who, b.conv, b.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_read(
    State(svc): Svc,
    Authed(who): Authed,
    JsonBody(b): JsonBody<MarkBody>,
) -> Result<StatusCode, ApiError> {
    svc.read(&who, b.conv, b.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /v1/groups`; public like [`SendBody`].
#[derive(Deserialize)]
pub struct GroupBody {
    name: String,
    #[serde(default)]
    members: Vec<UserId>,
}

async fn post_group(
    State(svc): Svc,
    Authed(who): Authed,
    JsonBody(b): JsonBody<GroupBody>,
) -> Result<impl IntoResponse, ApiError> {
    let g = svc.create_group(&who, &b.name, &b.members).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"group": g.group, "conv": format!("g:{}", g.group)})),
    ))
}

/// A group id from the path: an integer > 0.
fn group_id(raw: &str) -> Result<u64, ApiError> {
    parse_user(raw).map_err(|_| ApiError::bad_request(format!("invalid group id {raw:?}")))
}

async fn get_group(
    State(svc): Svc,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<GroupOut>, ApiError> {
    Ok(Json(svc.group(&who, group_id(&id)?).await?))
}

/// The body of `POST /v1/groups/{id}/members`; public like [`SendBody`].
#[derive(Deserialize)]
pub struct MemberBody {
    user: UserId,
}

async fn post_member(
    State(svc): Svc,
    Authed(who): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<MemberBody>,
) -> Result<Json<GroupOut>, ApiError> {
    Ok(Json(svc.add_member(&who, group_id(&id)?, b.user).await?))
}

async fn delete_member(
    State(svc): Svc,
    Authed(who): Authed,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = parse_user(&user)?;
    svc.remove_member(&who, group_id(&id)?, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PresenceQuery {
    users: String,
}

/// `GET /healthz`: 200 while the node can serve, 503 (with the reason) while its store or
/// NATS is unreachable, so a load balancer stops giving it users.
async fn get_health(State(svc): Svc) -> Response {
    match svc.unhealthy() {
        None => "ok".into_response(),
        Some(why) => ApiError::new(Code::Unavailable, why).into_response(),
    }
}

/// `GET /v1/cluster`: this node and every node heard from lately.
async fn get_cluster(State(svc): Svc, Authed(_who): Authed) -> impl IntoResponse {
    Json(svc.cluster_view())
}

async fn get_presence(
    State(svc): Svc,
    Authed(_who): Authed,
    Params(q): Params<PresenceQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let users = q
        .users
        .split(',')
        .filter(|s| !s.is_empty())
        .map(parse_user)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(svc.presence_of(&users)?))
}

/// The body of `PUT /v1/devices/{device}/push`; public like [`SendBody`].
#[derive(Deserialize)]
pub struct PushBody {
    platform: String,
    token: String,
}

async fn put_push(
    State(svc): Svc,
    Authed(who): Authed,
    Path(device): Path<String>,
    JsonBody(b): JsonBody<PushBody>,
) -> Result<StatusCode, ApiError> {
    svc.register_push(&who, &device, &b.platform, &b.token)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_metrics(State(svc): Svc) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        svc.metrics().render(),
    )
}

/// The body of `POST /v1/dev/token`; public like [`SendBody`].
#[derive(Deserialize)]
pub struct DevLogin {
    user: serde_json::Value,
    device: DeviceId,
}

/// How long a dev-login token is valid: a working day of demo.
const DEV_TOKEN_SECS: u64 = 12 * 3600;

/// `POST /v1/dev/token` `{"user", "device"}` → `{"token"}`, only routed with
/// `--dev-login`. The user is a number or a decimal string (a form field's value).
async fn dev_token(
    State(svc): Svc,
    JsonBody(b): JsonBody<DevLogin>,
) -> Result<impl IntoResponse, ApiError> {
    let raw = match &b.user {
        serde_json::Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    let user = parse_user(&raw)?;
    let token = svc.issue_token(user, &b.device, now_secs() + DEV_TOKEN_SECS);
    Ok(Json(serde_json::json!({ "token": token })))
}
