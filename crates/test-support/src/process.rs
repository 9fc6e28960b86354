//! Child processes: running commands to completion, signals, bounded waits, log tails, and the
//! `berth` binary under test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a command to completion, panicking with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command with `input` on its stdin; returns its output (not checked).
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Sends a signal (`TERM`, `KILL`, `HUP`, ...) to a process with the `kill` utility.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Waits for a child up to `limit`; `None` when it is still running.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The last `lines` lines of the file at `path` (empty when it cannot be read).
pub fn tail_file(path: &Path, lines: usize) -> String {
    tail(&std::fs::read_to_string(path).unwrap_or_default(), lines)
}

/// Whether `tool` is on `PATH` (`command -v`).
pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `berth` binary under test.
///
/// Cargo sets `CARGO_BIN_EXE_berth` for the `berth` crate's integration tests when it builds
/// and when it runs them; without it (a test binary started by hand), the binary is looked
/// for beside the test's own folder (`target/debug/deps/..`), where Cargo puts it.
pub fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_berth") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary's folder")
        .join("berth");
    assert!(
        p.is_file(),
        "no berth binary at {}: run the tests with cargo test -p berth",
        p.display()
    );
    p
}

/// Removes from `cmd`'s environment every variable of the test's own environment whose name
/// starts with one of `prefixes` (Distribution reads `REGISTRY_*` as configuration).
pub fn env_remove_prefixed(cmd: &mut Command, prefixes: &[&str]) {
    for (k, _) in std::env::vars() {
        if prefixes.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(k);
        }
    }
}

/// The `berth` binary with no `REGISTRY_*` or `RUST_LOG` from the test's environment.
pub fn berth_cmd() -> Command {
    let mut cmd = Command::new(berth_bin());
    env_remove_prefixed(&mut cmd, &["REGISTRY_"]);
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Resident memory of a process, in MiB (from `/proc/PID/status`).
pub fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("VmRSS")
        / 1024
}

/// Raises this process's soft limit of open files to the hard one (tests that hold hundreds
/// of sockets).
pub fn raise_open_file_limit() {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the open file limit");
}
