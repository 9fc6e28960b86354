//! The folder-to-tar writer checked against GNU tar: listing, unpacking, metadata.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::*;
use berth_builder::layer::{TarError, TarOptions, write_tar};

fn tar_of(root: &Path, options: &TarOptions) -> Vec<u8> {
    let mut out = Vec::new();
    write_tar(root, options, &mut out).unwrap();
    out
}

/// (path bytes, entry type byte, mode, uid, gid, mtime, uname, link) for each entry.
type Row = (Vec<u8>, u8, u32, u64, u64, u64, Vec<u8>, Option<Vec<u8>>);

fn rows(tar: &[u8]) -> Vec<Row> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path_bytes().into_owned(),
                h.entry_type().as_byte(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                h.username_bytes().unwrap_or_default().to_vec(),
                e.link_name_bytes().map(|l| l.into_owned()),
            )
        })
        .collect()
}

fn listing(tar: &[u8]) -> String {
    String::from_utf8(pipe("tar", &["--numeric-owner", "-tvf", "-"], tar)).unwrap()
}

#[test]
fn gnu_tar_lists_every_kind_of_entry() {
    let dir = tempdir();
    let root = dir.path();
    let has_device = make_rootfs(root);
    let tar = tar_of(root, &TarOptions::default());
    let list = listing(&tar);
    let line = |needle: &str| {
        list.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{list}"))
            .to_string()
    };
    assert!(line(" bin/app").starts_with("-rwsr-xr-x 0/0"), "{list}");
    assert!(line(" bin/sgid").starts_with("-rwx--s--x"), "{list}");
    assert!(line(" secret/").starts_with("drwxr-x---"), "{list}");
    assert!(line(" secret/key").starts_with("-rw-------"), "{list}");
    assert!(line(" sticky/").starts_with("drwxrwxrwt"), "{list}");
    assert!(
        line(" empty/nested-empty/").starts_with("drwx------"),
        "{list}"
    );
    assert!(
        line("link-passwd").ends_with("link-passwd -> /etc/passwd"),
        "{list}"
    );
    assert!(
        line("dangling").ends_with("dangling -> ../../../nowhere"),
        "{list}"
    );
    assert!(
        line("data/hard2").ends_with("data/hard2 link to data/hard1"),
        "{list}"
    );
    assert!(
        line("zz-hard3").ends_with("zz-hard3 link to data/hard1"),
        "{list}"
    );
    assert!(line("run/fifo").starts_with('p'), "{list}");
    if has_device {
        assert!(line("dev/null").starts_with("crw"), "{list}");
        assert!(line("dev/null").contains("1,3"), "{list}");
    }
    assert!(line(&long_name()).contains(&format!("long/{}", long_name())));
    // GNU tar escapes non-printable bytes in listings.
    line("bad-\\377\\376-name");
    assert!(
        !list.contains("PaxHeader"),
        "PAX headers must not show as files:\n{list}"
    );
}

#[test]
fn entries_are_sorted_and_complete() {
    let dir = tempdir();
    let root = dir.path();
    make_rootfs(root);
    let tar = tar_of(root, &TarOptions::default());
    let names: Vec<Vec<u8>> = rows(&tar).into_iter().map(|r| r.0).collect();
    let trimmed: Vec<Vec<u8>> = names
        .iter()
        .map(|n| n.strip_suffix(b"/").unwrap_or(n).to_vec())
        .collect();
    let mut sorted = trimmed.clone();
    sorted.sort();
    assert_eq!(
        trimmed, sorted,
        "entries must be in byte order of their path"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(b"/") || n.starts_with(b"./"))
    );
    // Every file system entry is there exactly once.
    let mut expected = BTreeSet::new();
    for entry in walk(root, b"") {
        expected.insert(entry);
    }
    let got: BTreeSet<Vec<u8>> = trimmed.into_iter().collect();
    assert_eq!(got, expected);
    assert!(got.contains(non_utf8_name().as_bytes()));
}

fn walk(root: &Path, prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for item in fs::read_dir(path_of(root, prefix)).unwrap() {
        let item = item.unwrap();
        let mut rel = prefix.to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(item.file_name().as_bytes());
        if item.file_type().unwrap().is_dir() {
            out.extend(walk(root, &rel));
        }
        out.push(rel);
    }
    out
}

#[test]
fn long_and_non_utf8_names_use_pax_records() {
    let dir = tempdir();
    let root = dir.path();
    make_rootfs(root);
    let tar = tar_of(root, &TarOptions::default());
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut pax_paths = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if let Some(ext) = entry.pax_extensions().unwrap() {
            for record in ext {
                let record = record.unwrap();
                if record.key_bytes() == b"path" {
                    pax_paths.push(record.value_bytes().to_vec());
                }
            }
        }
    }
    let long = format!("long/{}", long_name()).into_bytes();
    assert!(
        pax_paths.contains(&long),
        "no PAX path for the 150-char name"
    );
    assert!(pax_paths.contains(&non_utf8_name().as_bytes().to_vec()));
    assert!(pax_paths.contains(&"caf\u{e9}-\u{fc}n\u{ef}code".as_bytes().to_vec()));
}

#[test]
fn gnu_tar_unpacks_the_same_tree() {
    let dir = tempdir();
    let root = dir.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    let has_device = make_rootfs(&root);
    let tar = tar_of(&root, &TarOptions::default());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let tar_file = dir.path().join("layer.tar");
    fs::write(&tar_file, &tar).unwrap();
    run(
        "tar",
        &[
            OsStr::new("--numeric-owner"),
            OsStr::new("-xpf"),
            tar_file.as_os_str(),
            OsStr::new("-C"),
            out.as_os_str(),
        ],
    );

    for rel in walk(&root, b"") {
        let src = path_of(&root, &rel);
        let dst = path_of(&out, &rel);
        let what = String::from_utf8_lossy(&rel).into_owned();
        let a = fs::symlink_metadata(&src).unwrap();
        let b = fs::symlink_metadata(&dst).unwrap_or_else(|e| panic!("{what} missing: {e}"));
        assert_eq!(a.file_type(), b.file_type(), "{what}: type");
        assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()), "{what}: owner");
        if a.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&src).unwrap(),
                fs::read_link(&dst).unwrap(),
                "{what}"
            );
            continue;
        }
        assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "{what}: mode");
        assert_eq!(a.mtime(), b.mtime(), "{what}: mtime");
        if a.is_file() {
            assert_eq!(
                fs::read(&src).unwrap(),
                fs::read(&dst).unwrap(),
                "{what}: content"
            );
        }
        if a.file_type().is_char_device() {
            assert_eq!(a.rdev(), b.rdev(), "{what}: device numbers");
        }
    }
    // Hard links are links again, and the absolute symlink still points outside.
    let ino = |p: &str| fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("data/hard1"), ino("data/hard2"));
    assert_eq!(ino("data/hard1"), ino("zz-hard3"));
    assert_eq!(
        fs::read_link(out.join("link-passwd")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(out.join("empty/nested-empty").is_dir());
    assert_eq!(has_device, out.join("dev/null").exists());
}

#[test]
fn symlinks_are_never_followed() {
    let dir = tempdir();
    let root = dir.path().join("rootfs");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("sub/secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("to-dir")).unwrap();
    let names: Vec<Vec<u8>> = rows(&tar_of(&root, &TarOptions::default()))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(names, [b"to-dir".to_vec()]);
}

#[test]
fn same_content_elsewhere_gives_identical_bytes() {
    let dir = tempdir();
    let a = dir.path().join("a");
    fs::create_dir(&a).unwrap();
    make_rootfs(&a);
    let b = dir.path().join("b");
    // cp -a keeps modes, owners, mtimes and hard links but gives new inode numbers.
    run("cp", &[OsStr::new("-a"), a.as_os_str(), b.as_os_str()]);
    let options = TarOptions::default();
    let first = tar_of(&a, &options);
    assert_eq!(first, tar_of(&a, &options), "two runs differ");
    assert_eq!(first, tar_of(&b, &options), "a copy of the tree differs");
    let options = TarOptions {
        mtime_clamp: Some(1_000_000),
        ..TarOptions::default()
    };
    assert_eq!(sha256(&tar_of(&a, &options)), sha256(&tar_of(&b, &options)));
}

#[test]
fn source_date_epoch_clamps_newer_mtimes_only() {
    let dir = tempdir();
    let root = dir.path();
    fs::write(root.join("new"), b"n").unwrap();
    fs::write(root.join("old"), b"o").unwrap();
    File::options()
        .write(true)
        .open(root.join("old"))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000))
        .unwrap();
    fs::create_dir(root.join("d")).unwrap();
    std::os::unix::fs::symlink("new", root.join("l")).unwrap();
    let epoch = 5000;
    let options = TarOptions {
        mtime_clamp: Some(epoch),
        remove: vec!["/gone".into()],
        ..TarOptions::default()
    };
    let mtimes: Vec<(String, u64)> = rows(&tar_of(root, &options))
        .into_iter()
        .map(|r| (String::from_utf8(r.0).unwrap(), r.5))
        .collect();
    assert_eq!(
        mtimes,
        [
            (".wh.gone".to_string(), epoch),
            ("d/".to_string(), epoch),
            ("l".to_string(), epoch),
            ("new".to_string(), epoch),
            ("old".to_string(), 1000),
        ]
    );
    // Without the clamp the real (recent) mtime is kept.
    let unclamped = rows(&tar_of(root, &TarOptions::default()));
    assert!(unclamped.iter().find(|r| r.0 == b"new").unwrap().5 > epoch);
}

#[test]
fn owner_override_and_u2g() {
    let dir = tempdir();
    let root = dir.path();
    fs::create_dir(root.join("d")).unwrap();
    chmod(&root.join("d"), 0o700);
    fs::write(root.join("d/f"), b"x").unwrap();
    chmod(&root.join("d/f"), 0o4750);
    let options = TarOptions {
        owner: Some((1000, 3_000_000)),
        u2g: true,
        ..TarOptions::default()
    };
    let rows = rows(&tar_of(root, &options));
    let modes: Vec<u32> = rows.iter().map(|r| r.2).collect();
    assert_eq!(modes, [0o770, 0o4770]);
    for row in &rows {
        assert_eq!(
            (row.3, row.4),
            (1000, 3_000_000),
            "gid > 2^21 needs PAX/base-256"
        );
        assert!(row.6.is_empty(), "user names are never recorded");
    }
    // GNU tar agrees on the big gid.
    let list = listing(&tar_of(root, &options));
    assert!(list.contains("1000/3000000"), "{list}");
}

#[test]
fn filters_and_whiteouts_in_gnu_tar() {
    let dir = tempdir();
    let root = dir.path();
    make_rootfs(root);
    let options = TarOptions {
        include: vec!["bin/*".into(), "data".into()],
        remove: vec!["/etc/motd".into(), "/var/cache/*".into()],
        ..TarOptions::default()
    };
    let tar = tar_of(root, &options);
    listing(&tar); // GNU tar reads it
    let names: Vec<String> = rows(&tar)
        .into_iter()
        .map(|r| String::from_utf8(r.0).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bin/",
            "bin/app",
            "bin/sgid",
            "data/",
            "data/big.bin",
            "data/hard1",
            "data/hard2",
            "etc/.wh.motd",
            "var/cache/.wh..wh..opq"
        ]
    );
}

#[test]
fn sockets_are_skipped_and_reported() {
    let dir = tempdir();
    let root = dir.path();
    fs::write(root.join("f"), b"x").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let mut out = Vec::new();
    let summary = write_tar(root, &TarOptions::default(), &mut out).unwrap();
    assert_eq!(summary.entries, 1);
    assert_eq!(summary.skipped, [root.join("sock")]);
}

#[test]
fn missing_rootfs_error_names_the_path() {
    let dir = tempdir();
    let missing = dir.path().join("no-such-rootfs");
    let err = write_tar(&missing, &TarOptions::default(), std::io::sink()).unwrap_err();
    assert!(matches!(err, TarError::RootfsMissing { .. }));
    assert!(err.to_string().contains("no-such-rootfs"), "{err}");
}

const CHILD_ENV: &str = "BERTH_TEST_UNREADABLE_ROOTFS";

/// Root reads every file, so the unreadable-file case runs this test binary again as
/// uid/gid 65534 through `setpriv`, with the rootfs in [`CHILD_ENV`].
#[test]
fn unreadable_file_error_names_the_path() {
    let dir = tempdir();
    let root = dir.path();
    chmod(root, 0o755);
    fs::write(root.join("ok"), b"fine").unwrap();
    chmod(&root.join("ok"), 0o644);
    fs::write(root.join("locked"), b"secret").unwrap();
    chmod(&root.join("locked"), 0o000);

    let is_root = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !is_root {
        check_unreadable(root);
        return;
    }
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tar_layout::unreadable_file_child",
            "--nocapture",
        ])
        .env(CHILD_ENV, root)
        .output();
    match output {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stdout.contains(CHILD_MARKER),
                "the unprivileged child failed:\n{stdout}\n{stderr}"
            );
        }
        Err(e) => eprintln!("setpriv is not available ({e}); unreadable-file check skipped"),
    }
}

const CHILD_MARKER: &str = "unreadable-file-checked";

/// Helper for [`unreadable_file_error_names_the_path`]; does nothing when run directly.
#[test]
fn unreadable_file_child() {
    if let Some(root) = std::env::var_os(CHILD_ENV) {
        check_unreadable(Path::new(&root));
        println!("{CHILD_MARKER}");
    }
}

fn check_unreadable(root: &Path) {
    let err = write_tar(root, &TarOptions::default(), std::io::sink()).unwrap_err();
    assert!(matches!(err, TarError::Read { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&root.join("locked").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("ermission denied"), "{msg}");
}
