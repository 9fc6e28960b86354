//! Storage folders as tests see them: snapshots to compare before and after, checks of the blob
//! store's content addressing, and, for servers on S3, a copy of the bucket on disk so that the
//! same folder checks apply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::sha256_hex;

/// Every file and directory under `dir` (relative paths; directories end with `/`) with a
/// content digest for files, skipping `_uploads` subtrees and anything `skip` matches.
pub fn snapshot(dir: &Path, skip: &dyn Fn(&str) -> bool) -> BTreeMap<String, String> {
    let roots: Vec<PathBuf> = S3_ROOTS.lock().unwrap().keys().cloned().collect();
    for r in roots.iter().filter(|r| r.starts_with(dir)) {
        mirror_bucket(r);
    }
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if rel.split('/').any(|c| c == "_uploads") || skip(&rel) {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                stack.push(p);
            } else {
                out.insert(rel, sha256_hex(&std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// Files only, from [`snapshot`].
pub fn stored_files(root: &Path) -> BTreeMap<String, String> {
    snapshot(root, &|_| false)
        .into_iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .collect()
}

/// Checks every blob under `docker/registry/v2/blobs`: its data's SHA-256 equals its path.
/// Returns how many there are.
pub fn check_blob_store(root: &Path) -> usize {
    mirror_bucket(root);
    let base = root.join("docker/registry/v2/blobs/sha256");
    let mut n = 0;
    let Ok(prefixes) = std::fs::read_dir(&base) else {
        return 0;
    };
    for p in prefixes {
        let p = p.unwrap();
        for b in std::fs::read_dir(p.path()).unwrap() {
            let b = b.unwrap();
            let hex = b.file_name().to_string_lossy().into_owned();
            assert!(
                hex.starts_with(&*p.file_name().to_string_lossy()),
                "blob {hex} under the wrong prefix"
            );
            let data_path = b.path().join("data");
            if !data_path.exists() {
                // A kill between creating the blob's folder and renaming its finished temporary
                // file into `data` leaves only the temporary file, which nothing serves.
                for e in std::fs::read_dir(b.path()).unwrap() {
                    let name = e.unwrap().file_name().to_string_lossy().into_owned();
                    assert!(
                        name.starts_with(".berth-tmp-"),
                        "blob folder {hex} holds {name} but no data"
                    );
                }
                continue;
            }
            let data = std::fs::read(&data_path)
                .unwrap_or_else(|e| panic!("{}: {e}", data_path.display()));
            assert_eq!(
                sha256_hex(&data),
                hex,
                "stored blob {} does not hash to its name",
                data_path.display()
            );
            n += 1;
        }
    }
    n
}

/// The storage path of a blob's data.
pub fn blob_path(root: &Path, digest: &str) -> PathBuf {
    mirror_bucket(root);
    let hex = digest.strip_prefix("sha256:").unwrap();
    root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

// ---------------------------------------------------------------------------------------------
// S3 mode

/// Roots of servers whose data is in a bucket, and how to reach it.
static S3_ROOTS: std::sync::Mutex<BTreeMap<PathBuf, berth_s3::S3Config>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Makes the storage helpers look at a copy of the bucket behind `cfg` (under its
/// `registry` root directory) when they are given `root`.
pub fn register_s3_root(root: &Path, cfg: berth_s3::S3Config) {
    S3_ROOTS.lock().unwrap().insert(root.to_owned(), cfg);
}

/// `Some(redirect)` when the tests run on S3 (`BERTH_TEST_STORAGE=s3` or `s3-redirect`).
pub fn s3_mode() -> Option<bool> {
    match std::env::var("BERTH_TEST_STORAGE").as_deref() {
        Ok("s3") => Some(false),
        Ok("s3-redirect") => Some(true),
        Ok("") | Ok("folder") | Err(_) => None,
        Ok(other) => panic!("BERTH_TEST_STORAGE={other}: use s3, s3-redirect or folder"),
    }
}

/// Replaces the contents of `root` with a copy of the bucket behind it (a no-op for a server
/// on folder storage), so that folder-based checks see what the bucket holds. Objects still
/// being written (uploads) are left out, as they are not objects yet.
pub fn mirror_bucket(root: &Path) {
    let Some(cfg) = S3_ROOTS.lock().unwrap().get(root).cloned() else {
        return;
    };
    let root = root.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use berth_storage::Storage;
            let s = berth_s3::S3Storage::connect(berth_s3::S3Config {
                root_directory: "registry".into(),
                ..cfg
            })
            .await
            .expect("connect to the test bucket");
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            let mut stack = vec![String::new()];
            while let Some(dir) = stack.pop() {
                let names = match s.list(if dir.is_empty() { "docker" } else { &dir }).await {
                    Ok(n) => n,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => panic!("list {dir}: {e}"),
                };
                let dir = if dir.is_empty() {
                    "docker".to_owned()
                } else {
                    dir
                };
                for n in names {
                    let key = format!("{dir}/{n}");
                    match s.stat(&key).await {
                        Ok(m) if m.is_dir => stack.push(key),
                        Ok(m) if m.modified.is_none() => {} // an upload being written
                        Ok(_) => {
                            let data = s.read(&key, 1 << 30).await.unwrap();
                            let p = root.join(&key);
                            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                            std::fs::write(p, data).unwrap();
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => panic!("stat {key}: {e}"),
                    }
                }
            }
        });
    })
    .join()
    .expect("mirror the bucket");
}
