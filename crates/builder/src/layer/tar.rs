//! [`write_tar`]: the deterministic folder-to-tar writer.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ::tar::{Builder, EntryType};

use super::filter::PathFilter;
use super::header::{EntryHeader, append_entry};
use super::walk::{FsEntry, abs_path, collect};
use super::whiteout::{Whiteout, whiteouts};
use super::{TarError, TarOptions};

/// What [`write_tar`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TarSummary {
    /// Entries written, whiteouts included (PAX extended headers are not counted).
    pub entries: u64,
    /// Whiteout entries among them.
    pub whiteouts: u64,
    /// Paths that tar cannot represent (sockets) and were left out.
    pub skipped: Vec<PathBuf>,
}

/// Writes a deterministic tar of the folder `root` to `out` (see the [module
/// docs](super) for what goes in and how).
///
/// This is blocking file-system I/O: from async code run it on a blocking thread, or
/// use [`crate::pipeline::layer_from_dir`], which does.
///
/// # Errors
///
/// [`TarError`] naming the rootfs or the path inside it that failed: missing or
/// non-directory rootfs, unreadable entries, files changing during the copy, invalid or
/// unmatched filters, invalid or colliding whiteouts, or a failing `out`.
pub fn write_tar<W: Write>(
    root: &Path,
    options: &TarOptions,
    out: W,
) -> Result<TarSummary, TarError> {
    let filter = PathFilter::new(&options.include)?;
    let whiteouts = whiteouts(&options.remove)?;
    let entries = select(collect(root)?, filter, root)?;

    let mut writer = EntryWriter {
        root,
        options,
        builder: Builder::new(out),
        hard_links: HashMap::new(),
        summary: TarSummary::default(),
    };

    // Merge the two sorted lists so the archive stays in path order.
    let mut fs_iter = entries.iter().peekable();
    let mut wh_iter = whiteouts.iter().peekable();
    loop {
        let take_whiteout = match (fs_iter.peek(), wh_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(fs_entry), Some(wh)) => {
                if fs_entry.rel == wh.entry {
                    return Err(TarError::WhiteoutCollision {
                        path: wh.original.clone(),
                        entry: String::from_utf8_lossy(&wh.entry).into_owned(),
                    });
                }
                wh.entry < fs_entry.rel
            }
        };
        if take_whiteout {
            let wh = wh_iter.next().expect("peeked");
            writer.whiteout(wh)?;
        } else {
            let entry = fs_iter.next().expect("peeked");
            writer.fs_entry(entry)?;
        }
    }

    writer
        .builder
        .into_inner()
        .map_err(|source| TarError::Output { source })?;
    Ok(writer.summary)
}

/// Applies the path filters: matching entries, everything under matching directories,
/// and the parent directories of all of those.
fn select(
    entries: Vec<FsEntry>,
    filter: Option<PathFilter>,
    root: &Path,
) -> Result<Vec<FsEntry>, TarError> {
    let Some(mut filter) = filter else {
        return Ok(entries);
    };
    let mut keep = vec![false; entries.len()];
    {
        let mut whole_dirs: HashSet<&[u8]> = HashSet::new();
        // Entries are sorted, so a directory is always seen before what it contains.
        for (i, entry) in entries.iter().enumerate() {
            let matched = filter.matches(&entry.rel);
            if matched || ancestors(&entry.rel).any(|a| whole_dirs.contains(a)) {
                keep[i] = true;
                if entry.meta.is_dir() {
                    whole_dirs.insert(&entry.rel);
                }
            }
        }
    }
    if let Some(pattern) = filter.first_unmatched() {
        return Err(TarError::FilterMatchedNothing {
            pattern: pattern.to_string(),
            root: root.to_path_buf(),
        });
    }
    let mut parents: HashSet<&[u8]> = HashSet::new();
    for (entry, _) in entries.iter().zip(&keep).filter(|(_, k)| **k) {
        for ancestor in ancestors(&entry.rel) {
            if !parents.insert(ancestor) {
                break; // its own ancestors are already in
            }
        }
    }
    let parents: HashSet<Vec<u8>> = parents.into_iter().map(<[u8]>::to_vec).collect();
    Ok(entries
        .into_iter()
        .zip(keep)
        .filter(|(entry, keep)| *keep || parents.contains(&entry.rel))
        .map(|(entry, _)| entry)
        .collect())
}

/// `a/b/c` -> `a/b`, `a`.
fn ancestors(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = rel.len();
    std::iter::from_fn(move || {
        let slash = rel[..end].iter().rposition(|&b| b == b'/')?;
        end = slash;
        Some(&rel[..slash])
    })
}

/// Clamps an mtime to `[0, clamp]`.
fn clamp_mtime(mtime: i64, clamp: Option<u64>) -> u64 {
    let mtime = u64::try_from(mtime).unwrap_or(0);
    match clamp {
        Some(limit) if mtime > limit => limit,
        _ => mtime,
    }
}

/// Copies the owner permission bits onto the group bits.
fn user_to_group(mode: u32) -> u32 {
    (mode & !0o070) | ((mode & 0o700) >> 3)
}

/// Linux `dev_t` encoding (glibc `gnu_dev_major` / `gnu_dev_minor`).
fn dev_major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & 0xffff_f000);
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xffff_ff00);
    (major as u32, minor as u32)
}

struct EntryWriter<'a, W: Write> {
    root: &'a Path,
    options: &'a TarOptions,
    builder: Builder<W>,
    /// (dev, inode) of multiply-linked files -> archive path of their first occurrence.
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    summary: TarSummary,
}

impl<W: Write> EntryWriter<'_, W> {
    fn owner(&self, meta: &fs::Metadata) -> (u64, u64) {
        self.options
            .owner
            .unwrap_or((u64::from(meta.uid()), u64::from(meta.gid())))
    }

    fn mode(&self, raw: u32) -> u32 {
        let mode = raw & 0o7777;
        if self.options.u2g {
            user_to_group(mode)
        } else {
            mode
        }
    }

    fn append(&mut self, header: &EntryHeader<'_>, data: impl Read) -> Result<(), TarError> {
        append_entry(&mut self.builder, header, data)
            .map_err(|source| TarError::Output { source })?;
        self.summary.entries += 1;
        Ok(())
    }

    fn whiteout(&mut self, wh: &Whiteout) -> Result<(), TarError> {
        let (uid, gid) = self.options.owner.unwrap_or((0, 0));
        self.append(
            &EntryHeader {
                path: &wh.entry,
                kind: EntryType::Regular,
                mode: 0o644,
                uid,
                gid,
                mtime: self.options.mtime_clamp.unwrap_or(0),
                size: 0,
                link: None,
                device: None,
            },
            io::empty(),
        )?;
        self.summary.whiteouts += 1;
        Ok(())
    }

    fn fs_entry(&mut self, entry: &FsEntry) -> Result<(), TarError> {
        let meta = &entry.meta;
        let file_type = meta.file_type();
        let abs = abs_path(self.root, &entry.rel);
        let (uid, gid) = self.owner(meta);
        let mut header = EntryHeader {
            path: &entry.rel,
            kind: EntryType::Regular,
            mode: self.mode(meta.mode()),
            uid,
            gid,
            mtime: clamp_mtime(meta.mtime(), self.options.mtime_clamp),
            size: 0,
            link: None,
            device: None,
        };

        if file_type.is_dir() {
            let mut path = entry.rel.clone();
            path.push(b'/');
            header.path = &path;
            header.kind = EntryType::Directory;
            return self.append(&header, io::empty());
        }
        if file_type.is_symlink() {
            let target = fs::read_link(&abs)
                .map_err(|source| TarError::Read {
                    path: abs.clone(),
                    source,
                })?
                .into_os_string()
                .into_vec();
            header.kind = EntryType::Symlink;
            header.link = Some(&target);
            return self.append(&header, io::empty());
        }
        if file_type.is_file() {
            return self.regular_file(entry, &abs, header);
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            header.kind = if file_type.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            header.device = Some(dev_major_minor(meta.rdev()));
            return self.append(&header, io::empty());
        }
        if file_type.is_fifo() {
            header.kind = EntryType::Fifo;
            return self.append(&header, io::empty());
        }
        tracing::warn!(path = %abs.display(), "skipping socket: tar cannot store sockets");
        self.summary.skipped.push(abs);
        Ok(())
    }

    fn regular_file(
        &mut self,
        entry: &FsEntry,
        abs: &Path,
        mut header: EntryHeader<'_>,
    ) -> Result<(), TarError> {
        let meta = &entry.meta;
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.hard_links.get(&key) {
                let first = first.clone();
                let link = EntryHeader {
                    kind: EntryType::Link,
                    link: Some(&first),
                    ..header
                };
                return self.append(&link, io::empty());
            }
            self.hard_links.insert(key, entry.rel.clone());
        }

        let read_err = |source| TarError::Read {
            path: abs.to_path_buf(),
            source,
        };
        let file = File::open(abs).map_err(read_err)?;
        let opened = file.metadata().map_err(read_err)?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(TarError::FileChanged {
                path: abs.to_path_buf(),
                detail: "it was replaced by another file".into(),
            });
        }
        header.size = opened.len();
        let mut content = ContentReader {
            file,
            remaining: header.size,
            error: None,
        };
        if let Err(source) = append_entry(&mut self.builder, &header, &mut content) {
            return Err(match content.error.take() {
                Some(source) => read_err(source),
                None => TarError::Output { source },
            });
        }
        self.summary.entries += 1;
        if content.remaining > 0 {
            return Err(TarError::FileChanged {
                path: abs.to_path_buf(),
                detail: format!(
                    "it shrank from {} to {} bytes",
                    header.size,
                    header.size - content.remaining
                ),
            });
        }
        let mut probe = [0u8; 1];
        if content.file.read(&mut probe).map_err(read_err)? > 0 {
            return Err(TarError::FileChanged {
                path: abs.to_path_buf(),
                detail: format!("it grew beyond {} bytes", header.size),
            });
        }
        Ok(())
    }
}

/// Reads at most `remaining` bytes of a file and keeps the read error (if any) apart
/// from write errors, so failures can name the right culprit.
struct ContentReader {
    file: File,
    remaining: u64,
    error: Option<io::Error>,
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.file.read(&mut buf[..max]) {
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.error = Some(e);
                Err(io::Error::new(kind, "reading a rootfs file failed"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_of_a_path() {
        let got: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(got, [b"a/b".as_slice(), b"a"]);
        assert_eq!(ancestors(b"top").count(), 0);
    }

    #[test]
    fn mtime_clamp_only_lowers() {
        assert_eq!(clamp_mtime(100, Some(50)), 50);
        assert_eq!(clamp_mtime(10, Some(50)), 10);
        assert_eq!(clamp_mtime(100, None), 100);
        assert_eq!(clamp_mtime(-5, None), 0);
    }

    #[test]
    fn u2g_copies_owner_bits_to_group() {
        assert_eq!(user_to_group(0o700), 0o770);
        assert_eq!(user_to_group(0o4750), 0o4770);
        assert_eq!(user_to_group(0o604), 0o664);
        assert_eq!(user_to_group(0o000), 0o000);
    }

    #[test]
    fn device_numbers() {
        // glibc makedev()
        fn makedev(major: u64, minor: u64) -> u64 {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        }
        assert_eq!(dev_major_minor(0x0103), (1, 3)); // /dev/null
        assert_eq!(dev_major_minor(makedev(1, 3)), (1, 3));
        assert_eq!(dev_major_minor(makedev(259, 65536)), (259, 65536));
        assert_eq!(dev_major_minor(makedev(4095 + 1, 1 << 20)), (4096, 1 << 20));
    }

    fn tar_names(root: &Path, options: &TarOptions) -> Vec<String> {
        let mut out = Vec::new();
        write_tar(root, options, &mut out).unwrap();
        let mut archive = ::tar::Archive::new(out.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn filters_keep_parents_and_subtrees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/sub")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("usr/lib/a.so"), b"a").unwrap();
        fs::write(root.join("usr/lib/b.txt"), b"b").unwrap();
        fs::write(root.join("usr/lib/sub/c.so"), b"c").unwrap();
        fs::write(root.join("etc/hosts"), b"h").unwrap();
        let options = TarOptions {
            include: vec!["usr/lib/*.so".into(), "/etc".into()],
            ..TarOptions::default()
        };
        assert_eq!(
            tar_names(root, &options),
            ["etc/", "etc/hosts", "usr/", "usr/lib/", "usr/lib/a.so"]
        );
    }

    #[test]
    fn unmatched_filter_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        let options = TarOptions {
            include: vec!["f".into(), "nope/*".into()],
            ..TarOptions::default()
        };
        let err = write_tar(dir.path(), &options, io::sink()).unwrap_err();
        assert!(matches!(err, TarError::FilterMatchedNothing { .. }));
        assert!(err.to_string().contains("nope/*"), "{err}");
    }

    #[test]
    fn whiteouts_are_merged_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/a"), b"a").unwrap();
        fs::write(root.join("etc/z"), b"z").unwrap();
        let options = TarOptions {
            remove: vec!["/etc/old".into(), "/var/cache/*".into()],
            ..TarOptions::default()
        };
        assert_eq!(
            tar_names(root, &options),
            [
                "etc/",
                "etc/.wh.old",
                "etc/a",
                "etc/z",
                "var/cache/.wh..wh..opq"
            ]
        );
    }

    #[test]
    fn whiteout_colliding_with_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".wh.x"), b"").unwrap();
        let options = TarOptions {
            remove: vec!["/x".into()],
            ..TarOptions::default()
        };
        let err = write_tar(dir.path(), &options, io::sink()).unwrap_err();
        assert!(matches!(err, TarError::WhiteoutCollision { .. }), "{err}");
    }

    #[test]
    fn output_errors_are_reported_as_output() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        let err = write_tar(dir.path(), &TarOptions::default(), Broken).unwrap_err();
        assert!(matches!(err, TarError::Output { .. }), "{err}");
    }
}
