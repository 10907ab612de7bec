//! The process's allocator settings (the `mimalloc` feature).
//!
//! mimalloc commits its arenas eagerly by default on Linux, and memory in an eagerly
//! committed arena stays resident after it is freed. A server holding 10 K WebSockets then
//! kept what their handshakes and first frames had used: idle memory per connection read
//! 5.6 KiB (memory store) and 7.3 KiB (fjall) instead of 5.2 and 5.5, and 18 KiB per
//! connection under the design's per-node load instead of 9.5. With lazily committed
//! arenas freed pages go back to the system.
//!
//! mimalloc reads the option once, when its first arena is made, before `main` runs; the
//! only way to set it for that arena is the environment the process starts with.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The environment variable mimalloc reads for the option.
const EAGER_COMMIT: &str = "MIMALLOC_ARENA_EAGER_COMMIT";

/// The first thing `main` does: unless the environment already sets the option (an
/// operator's own value wins), starts this program again in place (`exec`: same process
/// id, arguments, and everything else) with the option off. If that fails the process goes
/// on with mimalloc's default, which only costs memory (nothing could report it yet: no
/// log is set up this early).
pub fn tune() {
    if std::env::var_os(EAGER_COMMIT).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from(&exe));
    // `exec` returns only when it failed.
    let _failed = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(EAGER_COMMIT, "0")
        .exec();
}
