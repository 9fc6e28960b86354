//! The local folder backend: keys are files under a root directory.
//!
//! Small objects are written to a hidden temporary file in the same directory, fsynced and
//! renamed into place, then the directory is fsynced, so a killed process leaves either the old
//! object or the new one. Append writers gather [`WRITE_BUFFER`] bytes at a time and hand them to
//! a disk task; readers are fed by a read-ahead task. Each disk access is one short blocking
//! call: the async workers never wait on the disk, no blocking thread ever waits on a client
//! (however slow it sends or reads), and memory per transfer stays at a few buffers.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ByteRange, Meta, Object, ObjectWriter, Result, Storage, StorageError, check_key};

/// Prefix of temporary files; `list` hides them.
const TMP_PREFIX: &str = ".berth-tmp-";
/// How much an append writer gathers before one write system call.
const WRITE_BUFFER: usize = 1 << 20;
/// Size of the reads that feed a GET.
const READ_CHUNK: usize = 1 << 20;
/// Blocks a reader may have read ahead of the consumer.
const READ_AHEAD: usize = 2;

/// Storage in a local folder, laid out exactly as the keys say.
#[derive(Debug, Clone)]
pub struct FolderStorage {
    root: PathBuf,
    listings: Arc<Mutex<HashMap<PathBuf, Listing>>>,
}

/// A folder's entries, remembered with the folder's identity and modification time.
#[derive(Debug)]
struct Listing {
    ino: u64,
    mtime: (i64, i64),
    names: Vec<String>,
}

/// Folders whose listing is remembered (tags and catalog folders are read again and again).
const LISTINGS_CACHED: usize = 256;

/// A folder modified less than this long ago is not remembered: file systems stamp mtimes
/// with a coarse clock (a few milliseconds), so two changes can share one mtime, and a listing
/// read between them would look current after the second ("racy git" problem).
const LISTING_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

impl FolderStorage {
    /// Renames `from` to `to`, creating `to`'s folder; `durable` fsyncs that folder after.
    async fn move_key(&self, from: &str, to: &str, durable: bool) -> Result<()> {
        let src = self.full(from)?;
        let dst = self.full(to)?;
        let key = from.to_owned();
        blocking(move || {
            let dir = dst.parent().expect("keys have a parent");
            // The rename first: its folder usually exists, and then one system call does
            // (a garbage collection moves thousands). ENOENT means the folder is missing or
            // `from` is: while `from` is there, the folder is made (another thread may be
            // making it at the same moment, which is fine) and the rename tried again, a few
            // times, since pruning may remove an empty folder between the two.
            let mut tries = 0;
            loop {
                match std::fs::rename(&src, &dst) {
                    Ok(()) => break,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && tries < 3
                            && std::fs::symlink_metadata(&src).is_ok() =>
                    {
                        tries += 1;
                        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(&key, e))?;
                    }
                    Err(e) => return Err(StorageError::io(&key, e)),
                }
            }
            if durable {
                sync_dir(dir).map_err(|e| StorageError::io(&key, e))?;
            }
            Ok(())
        })
        .await
    }

    /// A backend rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StorageError::io(&root.display().to_string(), e))?;
        Ok(FolderStorage {
            root,
            listings: Arc::default(),
        })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the temporary files (of atomic puts) that a killed process left anywhere under
    /// the root, those last modified before `before`; returns how many. Blocking: it walks the
    /// whole tree, so run it on a blocking thread. A crash leaves them behind, and nothing
    /// else ever would (they are renamed into place or removed on failure); `list` already
    /// hides them, so this only frees the space.
    pub fn sweep_temporaries(&self, before: std::time::SystemTime) -> std::io::Result<usize> {
        let mut removed = 0;
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                // Removed meanwhile (a delete of a repository, say).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if kind.is_file()
                    && entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                    && entry.metadata()?.modified()? < before
                {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(removed)
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        check_key(path)?;
        Ok(self.root.join(path))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            path: String::new(),
            source: std::io::Error::other(e),
        })?
}

/// Reads exactly `want` bytes at the file's position (an object that shrinks is an error).
fn read_block(mut f: &std::fs::File, want: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match f.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "object shrank while being read",
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn put_atomic(key: &str, full: &Path, data: &[u8]) -> Result<()> {
    let dir = full.parent().expect("keys have a parent under the root");
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(key, e))?;
    let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, full)?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| StorageError::io(key, e))
}

/// Creates `full` with `data` unless it exists: the content goes to an owner-only temporary
/// file, is synced, and is hard-linked into place, which fails if the name exists (unlike a
/// rename, which replaces), so concurrent callers cannot both win.
fn put_if_absent(key: &str, full: &Path, data: &[u8]) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = full.parent().expect("keys have a parent under the root");
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(key, e))?;
    let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        let created = match std::fs::hard_link(&tmp, full) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        std::fs::remove_file(&tmp)?;
        sync_dir(dir)?;
        Ok(created)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| StorageError::io(key, e))
}

#[async_trait]
impl Storage for FolderStorage {
    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }

    fn lists_empty_folders(&self) -> bool {
        true
    }

    async fn get(&self, path: &str, range: Option<ByteRange>) -> Result<Object> {
        let full = self.full(path)?;
        let key = path.to_owned();
        let (file, size, start, len) = blocking(move || {
            let mut f = std::fs::File::open(&full).map_err(|e| StorageError::io(&key, e))?;
            let meta = f.metadata().map_err(|e| StorageError::io(&key, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(key));
            }
            let size = meta.len();
            let (start, len) = match range {
                None => (0, size),
                Some(r) => {
                    if r.start > size || (r.start == size && size > 0) {
                        return Err(StorageError::InvalidRange(key));
                    }
                    let len = r.len.unwrap_or(size - r.start).min(size - r.start);
                    (r.start, len)
                }
            };
            if start > 0 {
                f.seek(SeekFrom::Start(start))
                    .map_err(|e| StorageError::io(&key, e))?;
            }
            Ok((f, size, start, len))
        })
        .await?;
        let _ = start;
        // A task reads ahead in large blocks into a bounded channel: the disk and the network
        // overlap, and memory stays at a few blocks whatever the object's size. Each block is
        // one short blocking call; no thread waits while the consumer is slow (a client that
        // never reads would otherwise hold a blocking thread for good).
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
        tokio::spawn(async move {
            let mut file = Some(file);
            let mut left = len;
            while left > 0 {
                let want = left.min(READ_CHUNK as u64) as usize;
                let f = file.take().expect("the file is back after each block");
                let read = tokio::task::spawn_blocking(move || {
                    let r = read_block(&f, want);
                    (f, r)
                })
                .await;
                let block = match read {
                    Ok((f, r)) => {
                        file = Some(f);
                        r
                    }
                    Err(e) => Err(std::io::Error::other(e)),
                };
                match block {
                    Ok(buf) => {
                        left -= buf.len() as u64;
                        if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                            return; // the reader went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Object {
            size,
            stream: Box::pin(stream),
        })
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool> {
        let full = self.full(path)?;
        let key = path.to_owned();
        blocking(move || put_if_absent(&key, &full, &data)).await
    }

    async fn read(&self, path: &str, limit: u64) -> Result<Bytes> {
        let full = self.full(path)?;
        let key = path.to_owned();
        blocking(move || {
            let f = std::fs::File::open(&full).map_err(|e| StorageError::io(&key, e))?;
            let meta = f.metadata().map_err(|e| StorageError::io(&key, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(key));
            }
            if meta.len() > limit {
                return Err(StorageError::TooLarge { path: key, limit });
            }
            let mut buf = Vec::with_capacity(meta.len() as usize);
            f.take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(|e| StorageError::io(&key, e))?;
            if buf.len() as u64 > limit {
                return Err(StorageError::TooLarge { path: key, limit });
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn stat(&self, path: &str) -> Result<Meta> {
        let full = self.full(path)?;
        let key = path.to_owned();
        blocking(move || {
            let m = std::fs::metadata(&full).map_err(|e| StorageError::io(&key, e))?;
            Ok(Meta {
                size: if m.is_dir() { 0 } else { m.len() },
                modified: m.modified().ok(),
                is_dir: m.is_dir(),
            })
        })
        .await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let full = self.full(path)?;
        let key = path.to_owned();
        blocking(move || put_atomic(&key, &full, &data)).await
    }

    async fn list_folders(&self, path: &str) -> Result<Vec<String>> {
        let full = self.full(path)?;
        let key = path.to_owned();
        blocking(move || {
            let rd = std::fs::read_dir(&full).map_err(|e| StorageError::io(&key, e))?;
            let mut out = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| StorageError::io(&key, e))?;
                let is_dir = entry
                    .file_type()
                    .map_err(|e| StorageError::io(&key, e))?
                    .is_dir();
                if let Some(name) = entry.file_name().to_str()
                    && is_dir
                    && !name.starts_with(TMP_PREFIX)
                {
                    out.push(name.to_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let full = self.full(path)?;
        let key = path.to_owned();
        let listings = self.listings.clone();
        blocking(move || {
            // One stat instead of reading a folder of thousands of tags on every request:
            // any entry created, removed or renamed changes the folder's mtime.
            let meta = std::fs::metadata(&full).map_err(|e| StorageError::io(&key, e))?;
            let (ino, mtime) = (meta.ino(), (meta.mtime(), meta.mtime_nsec()));
            if let Some(l) = listings.lock().expect("listings lock").get(&full)
                && l.ino == ino
                && l.mtime == mtime
            {
                return Ok(l.names.clone());
            }
            let rd = std::fs::read_dir(&full).map_err(|e| StorageError::io(&key, e))?;
            let mut out = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| StorageError::io(&key, e))?;
                if let Some(name) = entry.file_name().to_str()
                    && !name.starts_with(TMP_PREFIX)
                {
                    out.push(name.to_owned());
                }
            }
            let quiet = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= LISTING_QUIET);
            if quiet {
                let mut cache = listings.lock().expect("listings lock");
                if cache.len() >= LISTINGS_CACHED && !cache.contains_key(&full) {
                    cache.clear();
                }
                cache.insert(
                    full,
                    Listing {
                        ino,
                        mtime,
                        names: out.clone(),
                    },
                );
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path)?;
        let key = path.to_owned();
        blocking(move || {
            // An object first (one system call; the common case), a folder tree when the
            // path is one.
            match std::fs::remove_file(&full) {
                Ok(()) => Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::IsADirectory | std::io::ErrorKind::PermissionDenied
                    ) && std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir()) =>
                {
                    std::fs::remove_dir_all(&full).map_err(|e| StorageError::io(&key, e))
                }
                Err(e) => Err(StorageError::io(&key, e)),
            }
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.move_key(from, to, true).await
    }

    async fn rename_undurable(&self, from: &str, to: &str) -> Result<()> {
        self.move_key(from, to, false).await
    }

    async fn prune_empty_folders(&self, path: &str, stop: &str) -> Result<()> {
        let mut dir = self.full(path)?;
        let stop = self.full(stop)?;
        let key = path.to_owned();
        blocking(move || {
            while dir.starts_with(&stop) && dir != stop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {}
                    // Not empty (or gone already): nothing more to prune above it.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::NotFound
                        ) =>
                    {
                        break;
                    }
                    Err(e) => return Err(StorageError::io(&key, e)),
                }
                if !dir.pop() {
                    break;
                }
            }
            Ok(())
        })
        .await
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn ObjectWriter>> {
        let full = self.full(path)?;
        let key = path.to_owned();
        let file = blocking(move || {
            let dir = full.parent().expect("keys have a parent");
            std::fs::create_dir_all(dir).map_err(|e| StorageError::io(&key, e))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&full)
                .map_err(|e| StorageError::io(&key, e))?;
            // The disk task of an earlier writer of this object that was dropped without a
            // commit (a request that broke off) may still be writing its queued buffers; it
            // holds this lock until it ends. Cutting the file before then would let its late
            // writes land past the cut, inside what the new writer appends.
            f.lock().map_err(|e| StorageError::io(&key, e))?;
            let len = f.metadata().map_err(|e| StorageError::io(&key, e))?.len();
            if offset > len {
                return Err(StorageError::InvalidRange(key));
            }
            if offset < len {
                f.set_len(offset).map_err(|e| StorageError::io(&key, e))?;
            }
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| StorageError::io(&key, e))?;
            Ok(f)
        })
        .await?;
        Ok(Box::new(FolderWriter::spawn(path.to_owned(), file, offset)))
    }
}

/// Messages to a writer's disk task.
enum WriteMsg {
    Data(Vec<Bytes>),
    Commit(tokio::sync::oneshot::Sender<std::io::Result<()>>),
}

/// An append writer whose disk I/O runs in a task fed through a bounded channel, so receiving
/// and hashing the next bytes overlaps with writing the previous ones. Each buffer is written by
/// one short blocking call: no thread waits for a slow client's next bytes (a client that
/// stalls mid-upload would otherwise hold a blocking thread until it gave up). Every
/// [`SYNC_EVERY`] bytes the task also starts an `fdatasync` of what it has written so far on a
/// second descriptor and thread, so that writeback runs while writing goes on (instead of
/// stalling the upload) and the final fsync of a large blob is short.
struct FolderWriter {
    key: String,
    tx: tokio::sync::mpsc::Sender<WriteMsg>,
    /// Chunks gathered for the next hand-over; kept as received, not copied together.
    buf: Vec<Bytes>,
    buf_len: usize,
    size: u64,
}

/// Bytes between intermediate `fdatasync` calls of an append writer.
const SYNC_EVERY: u64 = 64 << 20;
/// Buffers queued to a writer's disk task.
const WRITE_QUEUE: usize = 2;

/// The disk side of a [`FolderWriter`]: the file (locked while it is open) and what is pending.
struct DiskState {
    file: std::fs::File,
    failed: Option<std::io::Error>,
    unsynced: u64,
    /// At most one background sync at a time: the next waits for it, which bounds how far
    /// writing can run ahead of the disk.
    syncing: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

fn join_sync(h: std::thread::JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    h.join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the sync thread panicked")))
}

impl DiskState {
    /// Writes one buffer (a blocking call).
    fn write(&mut self, data: &[Bytes]) {
        if self.failed.is_some() {
            return;
        }
        let r = data
            .iter()
            .try_for_each(|b| self.file.write_all(b))
            .and_then(|_| {
                self.unsynced += data.iter().map(|b| b.len() as u64).sum::<u64>();
                if self.unsynced < SYNC_EVERY {
                    return Ok(());
                }
                self.unsynced = 0;
                if let Some(h) = self.syncing.take() {
                    join_sync(h)?;
                }
                let dup = self.file.try_clone()?;
                self.syncing = Some(
                    std::thread::Builder::new()
                        .name("berth-sync".into())
                        .spawn(move || dup.sync_data())?,
                );
                Ok(())
            });
        self.failed = r.err();
    }

    /// Makes everything written durable and closes (unlocks) the file (a blocking call).
    fn commit(mut self) -> std::io::Result<()> {
        let pending = self.syncing.take().map(join_sync).unwrap_or(Ok(()));
        match self.failed.take() {
            Some(e) => Err(e),
            None => pending.and_then(|_| self.file.sync_data()),
        }
    }
}

impl FolderWriter {
    fn spawn(key: String, file: std::fs::File, size: u64) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteMsg>(WRITE_QUEUE);
        tokio::spawn(async move {
            let mut state = Some(DiskState {
                file,
                failed: None,
                unsynced: 0,
                syncing: None,
            });
            let stopped = || std::io::Error::other("the writer's disk task stopped");
            while let Some(msg) = rx.recv().await {
                let mut st = state.take().expect("the state is back after each write");
                match msg {
                    WriteMsg::Data(d) => {
                        match tokio::task::spawn_blocking(move || {
                            st.write(&d);
                            st
                        })
                        .await
                        {
                            Ok(st) => state = Some(st),
                            // The file is gone with the panicked call; the writer fails.
                            Err(_) => return,
                        }
                    }
                    WriteMsg::Commit(reply) => {
                        // Closed (and unlocked) before answering, so the next writer need not wait.
                        let r = tokio::task::spawn_blocking(move || st.commit())
                            .await
                            .unwrap_or_else(|_| Err(stopped()));
                        let _ = reply.send(r);
                        return;
                    }
                }
            }
        });
        FolderWriter {
            key,
            tx,
            buf: Vec::new(),
            buf_len: 0,
            size,
        }
    }

    async fn send_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.buf_len = 0;
        self.tx
            .send(WriteMsg::Data(data))
            .await
            .map_err(|_| StorageError::Io {
                path: self.key.clone(),
                source: std::io::Error::other("the writer's disk task stopped"),
            })
    }
}

#[async_trait]
impl ObjectWriter for FolderWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        self.buf_len += data.len();
        self.buf.push(data);
        if self.buf_len >= WRITE_BUFFER {
            self.send_buf().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.send_buf().await?;
        let (reply, done) = tokio::sync::oneshot::channel();
        let gone = || StorageError::Io {
            path: self.key.clone(),
            source: std::io::Error::other("the writer's disk task stopped"),
        };
        self.tx
            .send(WriteMsg::Commit(reply))
            .await
            .map_err(|_| gone())?;
        done.await
            .map_err(|_| gone())?
            .map_err(|e| StorageError::io(&self.key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembered_listings_follow_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let s = FolderStorage::new(dir.path()).unwrap();
        for t in ["a", "b"] {
            s.put(&format!("tags/{t}/link"), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        // Age the folder so that its listing is remembered.
        let tags = dir.path().join("tags");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&tags)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut first = s.list("tags").await.unwrap();
        first.sort();
        assert_eq!(first, ["a", "b"]);
        assert_eq!(s.listings.lock().unwrap().len(), 1);
        s.put("tags/c/link", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let mut second = s.list("tags").await.unwrap();
        second.sort();
        assert_eq!(second, ["a", "b", "c"]);
        s.delete("tags/a").await.unwrap();
        let mut third = s.list("tags").await.unwrap();
        third.sort();
        assert_eq!(third, ["b", "c"]);
    }

    #[tokio::test]
    async fn put_if_absent_makes_an_owner_only_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let s = FolderStorage::new(dir.path()).unwrap();
        assert!(
            s.put_if_absent("k/secret", Bytes::from_static(b"x"))
                .await
                .unwrap()
        );
        let mode = std::fs::metadata(dir.path().join("k/secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path().join("k")).unwrap().count(), 1);
    }

    #[test]
    fn the_sweep_removes_old_temporaries_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = FolderStorage::new(dir.path()).unwrap();
        let deep = dir.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        let old = deep.join(format!("{TMP_PREFIX}old"));
        let young = deep.join(format!("{TMP_PREFIX}young"));
        let kept = deep.join("link");
        for f in [&old, &young, &kept] {
            std::fs::write(f, b"x").unwrap();
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for f in [&old, &kept] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(s.sweep_temporaries(cutoff).unwrap(), 1);
        assert!(!old.exists() && young.exists() && kept.exists());
    }

    #[tokio::test]
    async fn folder_backend_passes_the_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        let s = FolderStorage::new(dir.path()).unwrap();
        crate::suite::run_all(&s).await;
    }
}
