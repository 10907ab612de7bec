//! A chromedriver process and browser windows driven through it, and the one view of a
//! page the tests assert on: a snapshot of what it shows, read from the DOM.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::child::skip;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a test waits for the page to show something it must show: generous, since
/// CI runs these beside every other test on two cores.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Browser tests take turns: each starts several Chromium processes, and on a small
/// machine running them all at once beside the other tests only makes each slow.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A chromedriver child process, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Driver {
    /// Starts chromedriver on a free port; `None` (a skip, a failure under `CI=true`) when
    /// chromium or chromedriver is not installed.
    pub async fn start() -> Option<Driver> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                skip(
                    "browser",
                    &format!("{bin} is missing (apt-get install -y chromium chromium-driver)"),
                );
                return None;
            }
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Its own process group, which the browsers it starts join: dropping the driver
        // ends them all, even when a failing test never closed its windows.
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _turn: turn,
        };
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(driver);
            }
            assert!(
                start.elapsed() < PATIENCE,
                "chromedriver did not listen on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new browser (its own profile, so its own storage): one person's window.
    pub async fn window(&self) -> Page {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--disable-crash-reporter", "--disable-breakpad",
                         "--window-size=1100,720", "--lang=en-US"],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session");
        Page { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window.
pub struct Page {
    pub client: Client,
}

/// What a page shows, read from its DOM in one go (see `SNAPSHOT`).
#[derive(Debug, Clone)]
pub struct Shown(pub Value);

impl Shown {
    /// The open conversation's messages as (body, state) in screen order; state is
    /// "pending", "sent", "delivered", "read" for mine and "" for others'.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.0["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["body"].as_str().unwrap_or_default().to_owned(),
                            m["state"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn bodies(&self) -> Vec<String> {
        self.messages().into_iter().map(|(b, _)| b).collect()
    }

    /// The state of the message whose body is `body`, if it is shown.
    pub fn state_of(&self, body: &str) -> Option<String> {
        self.messages()
            .into_iter()
            .find(|(b, _)| b == body)
            .map(|(_, s)| s)
    }

    /// The seqs of the messages shown, in screen order ("" for pending).
    pub fn seqs(&self) -> Vec<String> {
        self.0["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["seq"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The unread count the list shows for the conversation titled `title`.
    pub fn unread(&self, title: &str) -> Option<u64> {
        self.0["convs"]
            .as_array()?
            .iter()
            .find_map(|c| (c["title"] == title).then(|| c["unread"].as_str()?.parse().ok())?)
    }

    pub fn conv_titles(&self) -> Vec<String> {
        self.0["convs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c["title"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn text(&self, key: &str) -> String {
        self.0[key].as_str().unwrap_or_default().to_owned()
    }
}

/// Reads what the page shows: the conversation list, the open conversation's messages
/// (body as text, the tick state, the seq), the typing line, the header's presence, the
/// connection state, the errors.
const SNAPSHOT: &str = r#"
const q = (s) => document.querySelector(s);
const all = (s) => [...document.querySelectorAll(s)];
return {
  signedIn: !q('#app').hidden,
  conn: q('#app').dataset.conn || '',
  connText: q('#conn-status').textContent,
  title: q('#chat-title').textContent,
  presence: q('#chat-presence').textContent,
  typing: q('#typing').textContent,
  error: q('#chat-error').textContent,
  loginError: q('#login-error').textContent,
  convs: all('#conv-list li').map((li) => ({
    title: li.querySelector('.title').textContent,
    unread: li.dataset.unread,
    online: li.querySelector('.dot').classList.contains('online'),
  })),
  members: all('#member-list li').map((li) => li.querySelector('.name').textContent),
  messages: all('#messages li.msg').map((li) => ({
    body: li.querySelector('.body').textContent,
    html: li.querySelector('.body').innerHTML,
    state: li.dataset.state || '',
    seq: li.dataset.seq || '',
  })),
  scrollTop: q('#messages').scrollTop,
};
"#;

impl Page {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("load the page");
    }

    pub async fn shown(&self) -> Shown {
        Shown(
            self.client
                .execute(SNAPSHOT, vec![])
                .await
                .expect("read the page"),
        )
    }

    /// Waits until what the page shows satisfies `ok`, failing with `what` and the last
    /// snapshot after [`PATIENCE`].
    pub async fn wait(&self, what: &str, ok: impl Fn(&Shown) -> bool) -> Shown {
        let start = Instant::now();
        loop {
            let s = self.shown().await;
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the page never showed {what}; it shows {:#}",
                s.0
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    /// Fills a field (clearing it first).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear a field");
        e.send_keys(text).await.expect("type into a field");
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Signs in by user id (the server runs with `--dev-login`) and waits until connected.
    pub async fn sign_in(&self, base: &str, user: u64, device: &str) {
        self.sign_in_at(&format!("{base}/"), user, device).await;
    }

    /// Signs in by pasting a token and waits until connected.
    pub async fn sign_in_with_token(&self, url: &str, token: &str) {
        self.goto(url).await;
        self.fill("#login-token", token).await;
        self.click("#token-form button[type=submit]").await;
        self.wait("a connected chat", |s| s.text("conn") == "ready")
            .await;
    }

    pub async fn sign_in_at(&self, url: &str, user: u64, device: &str) {
        self.goto(url).await;
        self.fill("#login-user", &user.to_string()).await;
        self.fill("#login-device", device).await;
        self.click("#dev-form button[type=submit]").await;
        self.wait("a connected chat", |s| s.text("conn") == "ready")
            .await;
    }

    /// Opens the one-on-one conversation with `user` from the sidebar's form.
    pub async fn open_direct(&self, user: u64) {
        self.fill("#new-direct-user", &user.to_string()).await;
        self.click("#new-direct button[type=submit]").await;
        let title = format!("User {user}");
        self.wait(&format!("the conversation with {title}"), |s| {
            s.text("title") == title
        })
        .await;
    }

    /// Opens a conversation by clicking its entry in the list.
    pub async fn click_conv(&self, title: &str) {
        let items = self
            .client
            .find_all(Locator::Css("#conv-list li button"))
            .await
            .expect("the conversation list");
        for b in items {
            if b.text().await.unwrap_or_default().contains(title) {
                b.click().await.expect("open the conversation");
                return;
            }
        }
        panic!("no conversation titled {title} in the list");
    }

    /// Types a message in the composer and presses Enter.
    pub async fn send(&self, body: &str) {
        self.fill("#composer-input", body).await;
        self.find("#composer-input")
            .await
            .send_keys("\u{E007}")
            .await
            .expect("press Enter");
    }

    /// Writes a screenshot to `docs/screenshots/NAME.png` when `UPDATE_SCREENSHOTS=1`.
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let png = self.client.screenshot().await.expect("a screenshot");
            let dir = screenshots_dir();
            std::fs::create_dir_all(&dir).expect("docs/screenshots");
            std::fs::write(dir.join(format!("{name}.png")), png).expect("write a screenshot");
        }
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// `docs/screenshots/` of the project.
pub fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}
