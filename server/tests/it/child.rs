//! A real `chat-server serve` process for the kill -9 and outage tests of every durable
//! store, and what those tests share: tokens, the record of acknowledged messages, and
//! reading a conversation's whole history back.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use chat_server::auth::{Auth, now_secs};
use serde_json::Value;

use crate::support::SECRET;

/// A server child process, killed with SIGKILL when dropped.
pub struct ChildServer {
    child: Child,
    pub addr: String,
}

impl ChildServer {
    /// Starts a server on `store` (any `--store` value) with warnings logged.
    pub fn start(store: &str) -> ChildServer {
        Self::start_logging(store, "warn")
    }

    /// Starts a server on `store` with `RUST_LOG=rust_log`; returns once it listens.
    pub fn start_logging(store: &str, rust_log: &str) -> ChildServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--send-rate",
                "0",
                "--jwt-secret",
                SECRET,
                "--store",
                store,
            ])
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chat-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        ChildServer { child, addr }
    }

    /// Kills the server with SIGKILL (`Child::kill`) and reaps it.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token for `user` on device `d`, valid for ten minutes.
pub fn token(user: u64) -> String {
    Auth::new(SECRET)
        .unwrap()
        .issue(user, &"d".parse().unwrap(), now_secs() + 600)
}

/// (sender, id) → (conv, seq, body) of every acknowledged message.
pub type Acked = Arc<Mutex<HashMap<(u64, String), (String, u64, String)>>>;

/// The whole history of `conv` as `user` reads it over HTTP, newest first.
pub async fn history(addr: &str, user: u64, conv: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut url = format!("http://{addr}/v1/conversations/{conv}/messages?limit=200");
        if let Some(b) = before {
            url.push_str(&format!("&before={b}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => return out,
        }
    }
}
