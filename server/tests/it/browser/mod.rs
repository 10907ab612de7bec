//! The browser client in a real headless Chromium, driven over WebDriver (chromedriver,
//! `fantoccini`): what a person opening http://…/ in two windows sees. Each test starts
//! its own chromedriver on a free port and a real server on 127.0.0.1:0 with
//! `--dev-login`. Without chromium and chromedriver the tests are skipped, except under
//! `CI=true`, where that is a failure. With `UPDATE_SCREENSHOTS=1` they write
//! `docs/screenshots/*.png`.

mod chat;
mod driver;
mod gate;
mod history;
mod restart;
