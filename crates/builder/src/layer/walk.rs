//! One walk over the rootfs, collecting every entry with its `lstat` metadata.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::TarError;

/// An entry found under the rootfs.
#[derive(Debug)]
pub(crate) struct FsEntry {
    /// Path relative to the rootfs, raw bytes, `/`-separated, no leading or trailing `/`.
    pub rel: Vec<u8>,
    /// `lstat` metadata (symlinks are not followed).
    pub meta: fs::Metadata,
}

/// Absolute path of a rootfs-relative path.
pub(crate) fn abs_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Walks `root` (which itself may be given as a symlink to a directory) without following
/// any symlink inside it, and returns all entries sorted by the bytes of their path.
pub(crate) fn collect(root: &Path) -> Result<Vec<FsEntry>, TarError> {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(TarError::RootfsNotDirectory {
                path: root.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TarError::RootfsMissing {
                path: root.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(TarError::Read {
                path: root.to_path_buf(),
                source,
            });
        }
    }

    let mut out = Vec::new();
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(dir_rel) = pending.pop() {
        let dir_abs = abs_path(root, &dir_rel);
        let read_err = |source| TarError::Read {
            path: dir_abs.clone(),
            source,
        };
        for item in fs::read_dir(&dir_abs).map_err(read_err)? {
            let item = item.map_err(read_err)?;
            let name = item.file_name().into_vec();
            let rel = if dir_rel.is_empty() {
                name
            } else {
                let mut rel = Vec::with_capacity(dir_rel.len() + 1 + name.len());
                rel.extend_from_slice(&dir_rel);
                rel.push(b'/');
                rel.extend_from_slice(&name);
                rel
            };
            // DirEntry::metadata does not follow symlinks on Unix.
            let meta = item.metadata().map_err(|source| TarError::Read {
                path: item.path(),
                source,
            })?;
            if meta.is_dir() {
                pending.push(rel.clone());
            }
            out.push(FsEntry { rel, meta });
        }
    }
    out.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_path_bytes_with_parents_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a-c"), b"x").unwrap();
        fs::write(root.join("a/b/z"), b"x").unwrap();
        fs::create_dir(root.join("empty")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("link")).unwrap();
        let names: Vec<String> = collect(root)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.rel).unwrap())
            .collect();
        assert_eq!(names, ["a", "a-c", "a/b", "a/b/z", "empty", "link"]);
    }

    #[test]
    fn missing_and_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = collect(&missing).unwrap_err();
        assert!(matches!(err, TarError::RootfsMissing { .. }));
        assert!(err.to_string().contains("nope"), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            collect(&file).unwrap_err(),
            TarError::RootfsNotDirectory { .. }
        ));
    }
}
