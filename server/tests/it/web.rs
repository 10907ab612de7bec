//! The browser client as HTTP serves it: the page and its files with their content types
//! and revalidation, and `POST /v1/dev/token`, absent unless `--dev-login` turns it on.

use std::sync::Arc;

use chat_server::store::MemoryStore;
use serde_json::json;

use crate::support::{Server, config, status_json};

async fn dev_server() -> Server {
    let mut c = config();
    c.dev_login = true;
    Server::with(c, Arc::new(MemoryStore::new())).await
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_types_and_revalidation() {
    let srv = Server::start().await;
    for (path, ty, holds) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<script type=\"module\" src=\"/web/js/main.js\">",
        ),
        ("/web/style.css", "text/css; charset=utf-8", ".messages"),
        (
            "/web/js/main.js",
            "text/javascript; charset=utf-8",
            "import",
        ),
        ("/web/js/chat.js", "text/javascript; charset=utf-8", "sync"),
    ] {
        let r = srv.http.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], ty, "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        let etag = h["etag"].to_str().unwrap().to_owned();
        let text = r.text().await.unwrap();
        assert!(text.contains(holds), "{path} holds {holds:?}");
        // Unchanged: 304 and no body.
        let again = srv
            .http
            .get(srv.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert!(again.text().await.unwrap().is_empty());
        // A stale tag gets the file.
        let stale = srv
            .http
            .get(srv.url(path))
            .header("if-none-match", "\"0\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200, "{path}");
    }
    // No external resource: every script and sheet the page names is served here.
    let page = srv
        .http
        .get(srv.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    for path in ["/web/nope.js", "/web/../Cargo.toml", "/web/"] {
        let r = srv.http.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn dev_token_is_not_found_without_dev_login() {
    let srv = Server::start().await;
    let r = srv
        .http
        .post(srv.url("/v1/dev/token"))
        .json(&json!({"user": 1, "device": "web"}))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(r).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    srv.stop().await;
}

#[tokio::test]
async fn dev_token_signs_in_any_user_and_refuses_bad_input() {
    let srv = dev_server().await;
    for user in [json!(7), json!("7")] {
        let r = srv
            .http
            .post(srv.url("/v1/dev/token"))
            .json(&json!({"user": user, "device": "web-1"}))
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(r).await;
        assert_eq!(status, 200, "{body}");
        let who = srv.auth.verify(body["token"].as_str().unwrap()).unwrap();
        assert_eq!(who.user, 7);
        assert_eq!(who.device.to_string(), "web-1");
    }
    for bad in [
        json!({"user": 0, "device": "web"}),
        json!({"user": -3, "device": "web"}),
        json!({"user": "x", "device": "web"}),
        json!({"user": 1.5, "device": "web"}),
        json!({"user": 1, "device": "not ok"}),
        json!({"user": 1}),
        json!([1, 2]),
    ] {
        let r = srv
            .http
            .post(srv.url("/v1/dev/token"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(r).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
    srv.stop().await;
}
