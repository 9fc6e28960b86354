//! Deterministic tar archives of a rootfs folder (one image layer).
//!
//! [`write_tar`] walks a folder once and writes a tar in which:
//! - entries appear in byte order of their path (so parents come before children),
//!   directories included (empty ones too), without a `./` prefix and without a root entry;
//! - symlinks are stored as links and never followed, wherever they point;
//! - the second and later paths of a hard-linked file become hard-link entries;
//! - character/block devices and fifos are stored; sockets are skipped (tar cannot hold them);
//! - names that do not fit a ustar header, or are not ASCII, get a PAX `path` record
//!   (`hdrcharset=BINARY` when they are not UTF-8, so the raw bytes survive);
//! - only the mode, numeric uid/gid, size, mtime (whole seconds) and link target are
//!   recorded: no atime/ctime, no user/group names, no xattrs, so the same folder gives the
//!   same bytes on any host.
//!
//! [`TarOptions`] adds reproducibility and selection knobs (mtime clamp, owner override,
//! `u2g`, path filters, whiteouts).

mod filter;
mod header;
mod tar;
mod walk;
mod whiteout;

use std::io;
use std::path::PathBuf;

pub use self::tar::{TarSummary, write_tar};

/// Options for [`write_tar`]. `TarOptions::default()` archives everything as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarOptions {
    /// `SOURCE_DATE_EPOCH`: when set, every mtime later than this many seconds since the
    /// Unix epoch is lowered to it (earlier mtimes are kept). Whiteout entries get this
    /// mtime (or 0 when unset).
    pub mtime_clamp: Option<u64>,
    /// `(uid, gid)` to record for every entry instead of the owner on disk.
    /// User and group names are never recorded.
    pub owner: Option<(u64, u64)>,
    /// Copy the owner permission bits to the group bits (`rwx------` -> `rwxrwx---`),
    /// for images run with an arbitrary uid in group 0 (OpenShift style).
    pub u2g: bool,
    /// Path filters, relative to the rootfs. Empty = everything. Each entry is either a
    /// literal path (`usr/bin/app`) or a glob (`usr/lib/*.so*`, `etc/**/*.conf`): `*`, `?`
    /// and `[...]` do not cross `/`, `**` does, `{a,b}` alternates. A leading `/` or `./`
    /// is ignored. Matching entries go in, with their whole subtree when they are
    /// directories, plus their parent directories. A filter that matches nothing is an
    /// error (it is almost always a typo).
    pub include: Vec<String>,
    /// Absolute in-image paths to delete from lower layers. `/etc/foo` becomes the OCI
    /// whiteout `etc/.wh.foo`; `/var/cache/*` becomes the opaque whiteout
    /// `var/cache/.wh..wh..opq` (hide everything lower layers had in that directory).
    /// Whiteouts are written even when [`TarOptions::include`] is set.
    pub remove: Vec<String>,
}

/// Why a tar of a folder could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// The rootfs folder does not exist.
    #[error("rootfs {path} does not exist; pass an existing directory")]
    RootfsMissing {
        /// The rootfs path as given.
        path: PathBuf,
    },
    /// The rootfs path exists but is not a directory.
    #[error(
        "rootfs {path} is not a directory; pass the folder to archive (existing .tar/.tar.gz/.tar.zst files go through berth_builder::archive)"
    )]
    RootfsNotDirectory {
        /// The rootfs path as given.
        path: PathBuf,
    },
    /// A file or directory inside the rootfs could not be read.
    #[error(
        "cannot read {path}: {source}; make it readable by this user or leave it out with a path filter"
    )]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file changed between the walk and the moment its content was copied.
    #[error(
        "{path} changed while it was being archived ({detail}); archive a rootfs nothing else is writing to"
    )]
    FileChanged {
        /// The file that changed.
        path: PathBuf,
        /// What changed.
        detail: String,
    },
    /// A path filter is not a valid pattern.
    #[error("invalid path filter {pattern:?}: {reason}")]
    InvalidFilter {
        /// The filter as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A path filter matched no entry.
    #[error(
        "path filter {pattern:?} matches nothing under {root}; filters are relative to the rootfs, check the spelling"
    )]
    FilterMatchedNothing {
        /// The filter as given.
        pattern: String,
        /// The rootfs.
        root: PathBuf,
    },
    /// A whiteout path is not an absolute in-image path.
    #[error("invalid whiteout path {path:?}: {reason}")]
    InvalidWhiteout {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A whiteout entry has the same name as a file in the rootfs.
    #[error(
        "whiteout for {path:?} is the entry {entry:?}, which also exists in the rootfs; delete that file from the rootfs or drop the whiteout"
    )]
    WhiteoutCollision {
        /// The whiteout path as given.
        path: String,
        /// The tar entry name both would use.
        entry: String,
    },
    /// Writing the tar stream to its destination failed.
    #[error("writing the tar stream failed: {source}")]
    Output {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
