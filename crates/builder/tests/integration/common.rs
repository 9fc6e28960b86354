//! Helpers shared by the integration tests.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_oci::Digest;

pub fn sha256(data: &[u8]) -> Digest {
    Digest::sha256_of(data)
}

/// Whether an external tool can be run (`tool --version` succeeds).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` with `input` on stdin and returns stdout; panics with stderr on failure.
pub fn pipe(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a command and returns stdout; panics with stderr on failure.
pub fn run(cmd: &str, args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub const LONG_NAME_LEN: usize = 150;

/// The non-UTF-8 file name used in the test rootfs.
pub fn non_utf8_name() -> &'static OsStr {
    OsStr::from_bytes(b"bad-\xff\xfe-name")
}

pub fn long_name() -> String {
    "n".repeat(LONG_NAME_LEN)
}

/// A rootfs exercising every entry type and naming corner. Returns whether a device
/// node could be created (needs CAP_MKNOD).
pub fn make_rootfs(root: &Path) -> bool {
    let dir = |p: &str, mode: u32| {
        fs::create_dir_all(root.join(p)).unwrap();
        chmod(&root.join(p), mode);
    };
    let file = |p: &str, content: &[u8], mode: u32| {
        fs::write(root.join(p), content).unwrap();
        chmod(&root.join(p), mode);
    };
    dir("bin", 0o755);
    file("bin/app", b"#!/bin/sh\necho app\n", 0o4755);
    file("bin/sgid", b"x", 0o2711);
    dir("secret", 0o750);
    file("secret/key", b"hunter2", 0o600);
    dir("empty/nested-empty", 0o700);
    dir("sticky", 0o1777);
    dir("data", 0o755);
    let big: Vec<u8> = (0..(1 << 20) + 3).map(|i: u32| (i % 253) as u8).collect();
    file("data/big.bin", &big, 0o644);
    file("data/hard1", b"same inode", 0o640);
    fs::hard_link(root.join("data/hard1"), root.join("data/hard2")).unwrap();
    fs::hard_link(root.join("data/hard1"), root.join("zz-hard3")).unwrap();
    symlink("/etc/passwd", root.join("link-passwd")).unwrap();
    symlink("bin/app", root.join("link-rel")).unwrap();
    symlink("../../../nowhere", root.join("dangling")).unwrap();
    dir("long", 0o755);
    file(&format!("long/{}", long_name()), b"long", 0o644);
    let deep = format!("{}/{}/{}", "d".repeat(90), "e".repeat(90), "f".repeat(60));
    fs::create_dir_all(root.join(&deep)).unwrap();
    file(&format!("{deep}/leaf"), b"deep", 0o644);
    fs::write(root.join(non_utf8_name()), b"raw bytes name").unwrap();
    file("caf\u{e9}-\u{fc}n\u{ef}code", b"utf8", 0o644);
    dir("run", 0o755);
    run("mkfifo", &[root.join("run/fifo").as_os_str()]);
    dir("dev", 0o755);
    Command::new("mknod")
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path_of(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}
