//! Tests that cannot run here say so, where it is seen.
//!
//! A test that lacks root, a namespace or a tool calls [`skip`] and returns. Under CI (`CI=true`) that is a failure:
//! CI installs everything, so a missing prerequisite there is a broken set-up, not a reason to pass. Elsewhere the
//! test writes `SKIPPED <test>: <why>` straight to the terminal (libtest captures only the print macros), and when
//! the test binary exits, after libtest's `test result:` line, it lists every test that skipped, so the summary
//! never shows a skipped test as a silent `ok`.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, Once};

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SUMMARY: Once = Once::new();

/// Marks the calling test as not run because of `why`; panics under CI. The caller returns right after.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run under CI: {why}"
    );
    // One write, so the line is not split by the harness's own output from other threads.
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {why}\n").as_bytes());
    SKIPPED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(format!("{test}: {why}"));
    SUMMARY.call_once(|| {
        // SAFETY: registers a plain function, which runs once at exit after the harness has printed its summary.
        unsafe { nix::libc::atexit(print_summary) };
    });
}

extern "C" fn print_summary() {
    let skipped = SKIPPED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\nSKIPPED: {} test(s) of this binary did not run here (counted as passed above; CI=true makes them fail):",
        skipped.len()
    );
    for line in skipped.iter() {
        let _ = writeln!(err, "  {line}");
    }
}

/// True when running as root; otherwise skips the calling test, saying it needs root for `purpose`.
pub fn require_root(purpose: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip(&format!("needs root ({purpose})"));
    }
    root
}

/// True when every program is on `PATH`; otherwise skips the calling test, naming the first one missing.
pub fn require_programs(programs: &[&str]) -> bool {
    match programs.iter().find(|program| !on_path(program)) {
        None => true,
        Some(program) => {
            skip(&format!("{program} is not installed"));
            false
        }
    }
}

/// Whether `program` is an executable file in a `PATH` directory.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// True when `program --version` (or the given probe arguments) runs; otherwise skips.
pub fn require_runnable(program: &str, args: &[&str]) -> bool {
    let runs = Command::new(program).args(args).output().is_ok();
    if !runs {
        skip(&format!("{program} cannot be run"));
    }
    runs
}

/// True when `path` exists; otherwise skips, naming it.
pub fn require_file(path: &Path) -> bool {
    let exists = path.exists();
    if !exists {
        skip(&format!("{} is missing", path.display()));
    }
    exists
}
