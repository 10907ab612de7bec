//! The browser client (`web/` in the project), compiled into the binary so a server
//! started anywhere serves it with no files beside it and no network: `GET /` is the page,
//! `GET /web/…` its scripts and styles. (Its sign-in by user id, `POST /v1/dev/token`, is
//! an HTTP route like the others, in `http`.)
//!
//! The files keep their names across versions, so they are served with `no-cache` and an
//! `ETag`: a browser revalidates each load and gets `304 Not Modified` while the binary is
//! the same, and the new file at once after an upgrade.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Code};

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ty:expr) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!("../../web/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the client; `index.html` is the page at `/`.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/chat.js", JS),
    asset!("js/conn.js", JS),
    asset!("js/state.js", JS),
    asset!("js/view.js", JS),
    asset!("js/util.js", JS),
];

/// Each asset's entity tag: a hash of its bytes (FNV-1a, 64 bits), so it changes exactly
/// when the file does.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let h = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{h:016x}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
});

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == name) else {
        return ApiError::new(Code::NotFound, "no such file").into_response();
    };
    let asset = &ASSETS[i];
    let etag = ETAGS[i].clone();
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag),
        (
            header::HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// `GET /`: the client's page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /web/{path}`: a script or stylesheet of the client.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}
