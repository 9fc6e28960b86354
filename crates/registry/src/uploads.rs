//! Blob upload sessions: started by POST, fed by PATCH, finished by PUT with the digest.
//!
//! Bytes are hashed as they stream into `_uploads/<id>/data`. At the end of each request the
//! SHA-256 state is saved under the new offset, then the data is committed, then older states
//! are dropped. An upload's offset is the largest saved offset that the committed data reaches,
//! so it is always backed by durable data and a matching hash state: a request that breaks off
//! (or a killed server, on any replica) leaves at most an unreported tail, which the next write
//! discards. Saving the state first lets an object store's writer, which can cut into data it
//! has committed only by copying it, be reopened exactly where the last commit ended.

use berth_oci::{Algorithm, Digest, Hasher};
use berth_storage::ByteStream;
use bytes::Bytes;
use futures::StreamExt;

use crate::blobs::BlobInfo;
use crate::{Registry, RegistryError, Result, check_name, paths};

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The upload's id (a UUID).
    pub id: String,
    /// Bytes received and stored so far.
    pub offset: u64,
}

fn check_id(id: &str) -> Result<()> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(()),
        _ => Err(RegistryError::UploadUnknown(id.to_owned())),
    }
}

/// This process's lock of one upload; dropping it removes the map entry when nobody else
/// holds or waits for it.
struct UploadLock {
    locks: crate::UploadLocks,
    id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        let mut map = self.locks.lock().expect("upload lock map poisoned");
        // Clones are made only under the map's lock, so the count read here is exact: one
        // for the map's own entry means no other holder or waiter.
        self.guard = None;
        if map
            .get(&self.id)
            .is_some_and(|m| std::sync::Arc::strong_count(m) == 1)
        {
            map.remove(&self.id);
        }
    }
}

impl Registry {
    /// Takes this process's lock of an upload, after checking the name and id: only a
    /// well-formed id gets an entry in the lock map, and the entry goes when its last holder
    /// or waiter does, so that requests for made-up ids leave nothing behind.
    async fn lock_upload(&self, name: &str, id: &str) -> Result<UploadLock> {
        check_name(name)?;
        check_id(id)?;
        let mutex = {
            let mut map = self.upload_locks.lock().expect("upload lock map poisoned");
            map.entry(id.to_owned()).or_default().clone()
        };
        // Made before waiting, so that a request dropped while it waits (its client went away)
        // still removes the entry.
        let mut lock = UploadLock {
            locks: self.upload_locks.clone(),
            id: id.to_owned(),
            guard: None,
        };
        lock.guard = Some(mutex.lock_owned().await);
        Ok(lock)
    }

    /// Starts an upload session.
    pub async fn start_upload(&self, name: &str) -> Result<UploadStatus> {
        check_name(name)?;
        self.check_writable()?;
        self.check_quota_room(name).await?;
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.storage
            .put(&paths::upload_started(name, &id), Bytes::from(now))
            .await?;
        self.storage
            .writer(&paths::upload_data(name, &id), 0)
            .await?
            .commit()
            .await?;
        self.save_state(name, &id, 0, &Hasher::new(Algorithm::Sha256))
            .await?;
        Ok(UploadStatus { id, offset: 0 })
    }

    /// Saves the hash state at `offset` (before the data up to `offset` is committed).
    async fn save_state(&self, name: &str, id: &str, offset: u64, h: &Hasher) -> Result<()> {
        let dir = paths::upload_hashstates(name, id);
        self.storage
            .put(&format!("{dir}/{offset}"), Bytes::from(h.save()))
            .await?;
        Ok(())
    }

    /// Drops the states older than `offset` once the data up to `offset` is committed.
    async fn prune_states(&self, name: &str, id: &str, offset: u64) -> Result<()> {
        let dir = paths::upload_hashstates(name, id);
        if let Ok(names) = self.storage.list(&dir).await {
            for n in names {
                if n.parse::<u64>().is_ok_and(|o| o < offset) {
                    self.delete_quiet(&format!("{dir}/{n}")).await?;
                }
            }
        }
        Ok(())
    }

    /// The durable offset and hash state of an upload.
    async fn load_state(&self, name: &str, id: &str) -> Result<(u64, Hasher)> {
        check_name(name)?;
        check_id(id)?;
        if !self.exists(&paths::upload_started(name, id)).await? {
            return Err(RegistryError::UploadUnknown(id.to_owned()));
        }
        let dir = paths::upload_hashstates(name, id);
        let stored = match self.storage.stat(&paths::upload_data(name, id)).await {
            Ok(m) => m.size,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        // A state past the stored data belongs to a request whose data never committed.
        let best = match self.storage.list(&dir).await {
            Ok(names) => names
                .iter()
                .filter_map(|n| n.parse::<u64>().ok())
                .filter(|&o| o <= stored)
                .max(),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(offset) = best {
            let bytes = self.storage.read(&format!("{dir}/{offset}"), 4096).await?;
            if let Some(h) = Hasher::restore(Algorithm::Sha256, &bytes) {
                return Ok((offset, h));
            }
        }
        // No usable state (an upload begun by another registry): hash what is stored once.
        let mut h = Hasher::new(Algorithm::Sha256);
        let obj = match self.storage.get(&paths::upload_data(name, id), None).await {
            Ok(o) => o,
            Err(e) if e.is_not_found() => return Ok((0, h)),
            Err(e) => return Err(e.into()),
        };
        let mut st = obj.stream;
        let mut n = 0u64;
        while let Some(chunk) = st.next().await {
            let chunk = chunk.map_err(|e| {
                RegistryError::Storage(berth_storage::StorageError::io("upload", e))
            })?;
            h.update(&chunk);
            n += chunk.len() as u64;
        }
        Ok((n, h))
    }

    /// Where an upload stands.
    pub async fn upload_status(&self, name: &str, id: &str) -> Result<UploadStatus> {
        let (offset, _) = self.load_state(name, id).await?;
        Ok(UploadStatus {
            id: id.to_owned(),
            offset,
        })
    }

    /// Appends the body to the upload (its lock held). When the storage is full the upload is
    /// discarded, so that its space is freed at once rather than after the purge age.
    async fn append(
        &self,
        name: &str,
        id: &str,
        offset: u64,
        h: Hasher,
        expected_len: Option<u64>,
        body: ByteStream,
    ) -> Result<(u64, Hasher)> {
        let r = self
            .append_unobserved(name, id, offset, h, expected_len, body)
            .await;
        if r.as_ref().is_err_and(RegistryError::is_storage_full) {
            let _ = self.cancel_upload_locked(name, id).await;
        }
        self.observe_space(r)
    }

    /// Streams `body` onto the upload at `offset`, saves the hash state and commits the data;
    /// returns the new offset and hash state.
    async fn append_unobserved(
        &self,
        name: &str,
        id: &str,
        offset: u64,
        mut h: Hasher,
        expected_len: Option<u64>,
        mut body: ByteStream,
    ) -> Result<(u64, Hasher)> {
        let mut w = self
            .storage
            .writer(&paths::upload_data(name, id), offset)
            .await?;
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(RegistryError::Body)?;
            received += chunk.len() as u64;
            if expected_len.is_some_and(|l| received > l) {
                return Err(RegistryError::SizeInvalid(format!(
                    "request body is longer than the {} bytes announced",
                    expected_len.unwrap_or_default()
                )));
            }
            h.update(&chunk);
            w.write(chunk).await?;
        }
        if let Some(l) = expected_len
            && received != l
        {
            return Err(RegistryError::SizeInvalid(format!(
                "request body has {received} bytes but {l} were announced"
            )));
        }
        let offset = offset + received;
        self.save_state(name, id, offset, &h).await?;
        w.commit().await?;
        self.prune_states(name, id, offset).await?;
        Ok((offset, h))
    }

    /// Appends a chunk. `start` is where the client says the chunk begins (from
    /// `Content-Range`); it must equal the current offset. `expected_len` is the announced length.
    pub async fn write_upload(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
        expected_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        self.check_writable()?;
        let _lock = self.lock_upload(name, id).await?;
        let (offset, h) = self.load_state(name, id).await?;
        if let Some(s) = start
            && s != offset
        {
            return Err(RegistryError::RangeInvalid {
                given: s,
                expected: offset,
            });
        }
        // Refused before the chunk is stored when its announced length would cross the quota.
        self.check_quota_blob(name, None, offset + expected_len.unwrap_or(0))
            .await?;
        let (offset, _) = self.append(name, id, offset, h, expected_len, body).await?;
        Ok(UploadStatus {
            id: id.to_owned(),
            offset,
        })
    }

    /// Finishes an upload: appends the optional last chunk, checks the digest, and makes the
    /// blob visible in the repository. On a digest mismatch the upload is discarded.
    pub async fn finish_upload(
        &self,
        name: &str,
        id: &str,
        digest: &str,
        body: Option<(ByteStream, Option<u64>)>,
    ) -> Result<BlobInfo> {
        self.finish_upload_at(name, id, digest, None, body).await
    }

    /// [`Registry::finish_upload`] with the offset `start` where the client says the last chunk
    /// begins (from `Content-Range`): like [`Registry::write_upload`]'s, it is checked against
    /// the current offset under the upload's lock, so that no concurrent PATCH can move the
    /// offset between the check and the append.
    pub async fn finish_upload_at(
        &self,
        name: &str,
        id: &str,
        digest: &str,
        start: Option<u64>,
        body: Option<(ByteStream, Option<u64>)>,
    ) -> Result<BlobInfo> {
        // Without a `start`, a malformed digest is refused before the upload is looked at; with
        // one, an unknown upload or a wrong offset is reported first (the order clients see).
        let early = match start {
            None => Some(parse_digest(digest)?),
            Some(_) => None,
        };
        self.check_writable()?;
        let _lock = self.lock_upload(name, id).await?;
        let (mut offset, mut h) = self.load_state(name, id).await?;
        if let Some(s) = start
            && s != offset
        {
            return Err(RegistryError::RangeInvalid {
                given: s,
                expected: offset,
            });
        }
        let expected = match early {
            Some(d) => d,
            None => parse_digest(digest)?,
        };
        if let Some((stream, len)) = body {
            self.check_quota_blob(name, Some(&expected), offset + len.unwrap_or(0))
                .await?;
            (offset, h) = self.append(name, id, offset, h, len, stream).await?;
        } else {
            // No last chunk: still cut the data at the durable offset (waiting for any writer
            // a broken-off request left behind), so that bytes past the offset the hash state
            // covers never become part of the blob.
            self.storage
                .writer(&paths::upload_data(name, id), offset)
                .await?
                .commit()
                .await?;
        }
        let actual = match expected.algorithm() {
            Algorithm::Sha256 => h.finish(),
            // Uploads are hashed with SHA-256 as they stream (the digest's algorithm is known
            // only now); another algorithm needs one read of the stored data.
            other => self.rehash(name, id, other).await?,
        };
        if actual != expected {
            self.cancel_upload_locked(name, id).await?;
            return Err(RegistryError::DigestInvalid(format!(
                "uploaded content has digest {actual}, not {expected}: the upload was discarded, push the blob again"
            )));
        }
        if let Err(e) = self.check_quota_blob(name, Some(&expected), offset).await {
            self.cancel_upload_locked(name, id).await?;
            return Err(e);
        }
        let data = paths::blob_data(&expected);
        if self.exists(&data).await? {
            // Another upload of the same content won; the stored blob is identical.
        } else {
            self.storage
                .rename(&paths::upload_data(name, id), &data)
                .await?;
        }
        self.write_link(&paths::layer_link(name, &expected), &expected)
            .await?;
        self.delete_quiet(&paths::upload_dir(name, id)).await?;
        self.index_blob_linked(name).await?;
        tracing::info!(repository = name, digest = %expected, size = offset, "blob pushed");
        Ok(BlobInfo {
            digest: expected,
            size: offset,
        })
    }

    async fn rehash(&self, name: &str, id: &str, alg: Algorithm) -> Result<Digest> {
        let mut h = Hasher::new(alg);
        let obj = self
            .storage
            .get(&paths::upload_data(name, id), None)
            .await?;
        let mut st = obj.stream;
        while let Some(chunk) = st.next().await {
            let chunk = chunk.map_err(|e| {
                RegistryError::Storage(berth_storage::StorageError::io("upload", e))
            })?;
            h.update(&chunk);
        }
        Ok(h.finish())
    }

    /// Cancels an upload and removes its data.
    pub async fn cancel_upload(&self, name: &str, id: &str) -> Result<()> {
        self.check_writable()?;
        let _lock = self.lock_upload(name, id).await?;
        self.load_state(name, id).await?;
        self.cancel_upload_locked(name, id).await
    }

    async fn cancel_upload_locked(&self, name: &str, id: &str) -> Result<()> {
        self.delete_quiet(&paths::upload_dir(name, id)).await?;
        Ok(())
    }

    /// A monolithic upload: the whole blob in one request.
    pub async fn put_blob(
        &self,
        name: &str,
        digest: &str,
        body: ByteStream,
        len: Option<u64>,
    ) -> Result<BlobInfo> {
        let d = parse_digest(digest)?;
        if let Some(len) = len {
            check_name(name)?;
            self.check_quota_blob(name, Some(&d), len).await?;
        }
        let st = self.start_upload(name).await?;
        let res = self
            .finish_upload(name, &st.id, digest, Some((body, len)))
            .await;
        if res.is_err() {
            let _ = self.cancel_upload_locked(name, &st.id).await;
        }
        res
    }
}

/// Parses a client-given digest, mapping errors to `DIGEST_INVALID`.
pub(crate) fn parse_digest(s: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|e| RegistryError::DigestInvalid(e.to_string()))
}

impl Registry {
    /// Removes upload sessions started more than `max_age` ago (abandoned by their clients),
    /// as Distribution's upload purging does. Returns how many were removed.
    pub async fn purge_uploads(&self, max_age: std::time::Duration) -> Result<usize> {
        let now = time::OffsetDateTime::now_utc();
        let mut removed = 0;
        // Repositories that hold nothing but uploads are not in the catalog, so look for
        // `_uploads` folders themselves.
        for name in self.repo_dirs(|c| c == "_uploads").await? {
            let dir = format!("{}/_uploads", paths::repo(&name));
            let ids = match self.storage.list(&dir).await {
                Ok(v) => v,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for id in ids {
                let started = match self
                    .storage
                    .read(&paths::upload_started(&name, &id), 256)
                    .await
                {
                    Ok(b) => time::OffsetDateTime::parse(
                        String::from_utf8_lossy(&b).trim(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok(),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                };
                // A session with no readable start time is judged by its folder's age.
                let started = match started {
                    Some(t) => t,
                    None => match self
                        .storage
                        .stat(&format!("{dir}/{id}"))
                        .await
                        .ok()
                        .and_then(|m| m.modified)
                    {
                        Some(t) => t.into(),
                        None => continue,
                    },
                };
                if now - started > max_age {
                    self.delete_quiet(&format!("{dir}/{id}")).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{FolderStorage, RegistryConfig};

    fn empty() -> ByteStream {
        Box::pin(futures::stream::empty())
    }

    #[tokio::test]
    async fn requests_for_made_up_uploads_leave_no_lock_behind() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::new(
            Arc::new(FolderStorage::new(dir.path()).unwrap()),
            RegistryConfig::default(),
        );
        let long = "x".repeat(60_000);
        let unknown = uuid::Uuid::new_v4().hyphenated().to_string();
        for id in [long.as_str(), "not-a-uuid", unknown.as_str()] {
            for _ in 0..100 {
                assert!(r.write_upload("a", id, None, None, empty()).await.is_err());
                assert!(r.finish_upload("a", id, "sha256:00", None).await.is_err());
                assert!(r.cancel_upload("a", id).await.is_err());
            }
        }
        // A real upload's lock goes once its requests are done, finished or not.
        let up = r.start_upload("a").await.unwrap();
        let chunk: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"abc"))]));
        r.write_upload("a", &up.id, Some(0), Some(3), chunk)
            .await
            .unwrap();
        assert_eq!(r.upload_locks.lock().unwrap().len(), 0);
        let digest = Digest::sha256_of(b"abc").to_string();
        r.finish_upload("a", &up.id, &digest, None).await.unwrap();
        assert_eq!(r.upload_locks.lock().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn a_request_dropped_while_waiting_for_the_lock_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::new(
            Arc::new(FolderStorage::new(dir.path()).unwrap()),
            RegistryConfig::default(),
        );
        let up = r.start_upload("a").await.unwrap();
        // Hold the lock, and abandon many waiters for other ids (their clients went away).
        let held = r.lock_upload("a", &up.id).await.unwrap();
        for _ in 0..1000 {
            let id = uuid::Uuid::new_v4().hyphenated().to_string();
            let first = r.lock_upload("a", &id).await.unwrap();
            let mut waiter = Box::pin(r.lock_upload("a", &id));
            // Polled once (it queues); the holder finishes, then the waiter is dropped before
            // it was polled again.
            assert!(futures::FutureExt::now_or_never(&mut waiter).is_none());
            drop(first);
            drop(waiter);
        }
        assert_eq!(
            r.upload_locks.lock().unwrap().len(),
            1,
            "only the held lock"
        );
        drop(held);
        assert_eq!(r.upload_locks.lock().unwrap().len(), 0);
    }
}
