//! Append writers on S3: an object that grows over several requests, possibly on several
//! replicas, streamed into one S3 multipart upload.
//!
//! S3 objects cannot be appended to, and a multipart upload's parts cannot be read back before
//! the upload completes, so an object being written is kept as three things, all in the bucket:
//!
//! - the multipart upload at the object's own key, holding every full part (`chunk_size` bytes);
//! - a *tail* object with the bytes after the last full part (less than one part), under a
//!   hidden key `.<name>.berth-tail.<generation>`;
//! - a *state* object `.<name>.berth-upload` (JSON: upload id, part etags and sizes, tail key,
//!   total size). Writing it is the commit point: a writer that dies before then leaves the
//!   previous state intact, and the parts it uploaded past it are overwritten or left out.
//!
//! Any replica can reopen the writer from the state. Reading the object, or moving it, first
//! *seals* it: the tail goes up as the last part and the multipart upload completes. Hidden
//! keys start with `.`, which no key of the registry layout does, and listings hide them.

use std::sync::Arc;

use async_trait::async_trait;
use berth_storage::{ObjectWriter, Result, StorageError};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::store::{S3Storage, map_err};

const STATE_SUFFIX: &str = ".berth-upload";
const TAIL_SUFFIX: &str = ".berth-tail.";

/// The committed state of an object being written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The multipart upload holding `parts`, once one exists.
    upload_id: Option<String>,
    /// Every multipart upload created for this object and not yet completed or aborted
    /// (including `upload_id`), so that none is left behind when the object is dropped.
    #[serde(default)]
    uploads: Vec<String>,
    /// Full parts, in order.
    parts: Vec<Part>,
    /// Key of the tail object, when there is a tail.
    tail: Option<String>,
    /// Bytes in the tail.
    tail_size: u64,
    /// Total bytes: parts plus tail.
    pub(crate) size: u64,
    /// Bumped on each commit; names the tail object so that a new tail never overwrites the
    /// one the current state points at.
    generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    etag: String,
    size: u64,
}

impl State {
    fn parts_size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

/// The hidden key of an object's writer state, or `None` for a key with no parent.
pub(crate) fn state_key(key: &Path) -> Path {
    hidden(key, STATE_SUFFIX)
}

fn tail_key(key: &Path, generation: u64) -> Path {
    hidden(key, &format!("{TAIL_SUFFIX}{generation}"))
}

fn hidden(key: &Path, suffix: &str) -> Path {
    let s = key.as_ref();
    let (dir, name) = match s.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), s),
    };
    Path::from(format!("{dir}.{name}{suffix}"))
}

/// Whether a listed name is a hidden writer key; `Some(name)` of the object it belongs to
/// when it is a state key (so that listings show objects being written).
pub(crate) fn hidden_name(name: &str) -> Option<Option<&str>> {
    let rest = name.strip_prefix('.')?;
    Some(rest.strip_suffix(STATE_SUFFIX))
}

/// The object whose writer state `key` is, when it is one.
pub(crate) fn object_of_state_key(key: &Path) -> Option<Path> {
    let name = hidden_name(key.filename()?)??;
    Some(match key.as_ref().rsplit_once('/') {
        Some((dir, _)) => Path::from(format!("{dir}/{name}")),
        None => Path::from(name),
    })
}

/// Reads the writer state stored at `skey`.
pub(crate) async fn load_at(store: &AmazonS3, skey: &Path) -> Result<Option<State>> {
    match store.get(skey).await {
        Ok(r) => {
            let b = r.bytes().await.map_err(|e| map_err(skey.as_ref(), e))?;
            serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StorageError::Io {
                    path: skey.to_string(),
                    source: std::io::Error::other(format!("corrupt upload state: {e}")),
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(map_err(skey.as_ref(), e)),
    }
}

async fn save(store: &AmazonS3, skey: &Path, st: &State) -> Result<()> {
    let json = serde_json::to_vec(st).expect("state serializes");
    store
        .put(skey, PutPayload::from(json))
        .await
        .map_err(|e| map_err(skey.as_ref(), e))?;
    Ok(())
}

/// Aborts the multipart uploads in `ids` (except `keep`), ignoring ones already gone.
async fn abort_all(store: &AmazonS3, key: &Path, ids: &[String], keep: Option<&str>) {
    for id in ids.iter().filter(|i| Some(i.as_str()) != keep) {
        if let Err(e) = store.abort_multipart(key, id).await {
            tracing::debug!(key = %key, error = %e, "aborting a multipart upload failed");
        }
    }
}

/// Drops an object being written: aborts its uploads and deletes its tail and state.
pub(crate) async fn discard(store: &AmazonS3, key: &Path, st: &State) -> Result<()> {
    abort_all(store, key, &st.uploads, None).await;
    if let Some(t) = &st.tail {
        let _ = store.delete(&Path::from(t.as_str())).await;
    }
    Ok(())
}

/// Turns an object being written into a plain object at `key`. Returns `false` when there
/// is no writer state for `key`.
pub(crate) async fn seal(store: &AmazonS3, key: &Path) -> Result<bool> {
    let skey = state_key(key);
    let Some(st) = load_at(store, &skey).await? else {
        return Ok(false);
    };
    let err = |e| map_err(key.as_ref(), e);
    match &st.upload_id {
        Some(id) if !st.parts.is_empty() => {
            let mut parts: Vec<PartId> = st
                .parts
                .iter()
                .map(|p| PartId {
                    content_id: p.etag.clone(),
                })
                .collect();
            if let Some(t) = &st.tail {
                // The tail is under one part in size, so holding it is bounded.
                let tail = store
                    .get(&Path::from(t.as_str()))
                    .await
                    .map_err(err)?
                    .bytes()
                    .await
                    .map_err(err)?;
                parts.push(
                    store
                        .put_part(key, id, parts.len(), PutPayload::from(tail))
                        .await
                        .map_err(err)?,
                );
            }
            store
                .complete_multipart(key, id, parts)
                .await
                .map_err(err)?;
            abort_all(store, key, &st.uploads, Some(id)).await;
        }
        _ => {
            abort_all(store, key, &st.uploads, None).await;
            match &st.tail {
                Some(t) => store
                    .copy(&Path::from(t.as_str()), key)
                    .await
                    .map_err(err)?,
                None => {
                    store.put(key, PutPayload::new()).await.map_err(err)?;
                }
            }
        }
    }
    store.delete(&skey).await.map_err(err)?;
    if let Some(t) = &st.tail {
        let _ = store.delete(&Path::from(t.as_str())).await;
    }
    Ok(true)
}

/// Opens a writer on `key` that keeps its first `offset` bytes.
pub(crate) async fn open(
    s: &S3Storage,
    path: &str,
    key: Path,
    offset: u64,
) -> Result<Box<dyn ObjectWriter>> {
    let store = s.store();
    let skey = state_key(&key);
    let on_disk = load_at(&store, &skey).await?;
    let mut w = S3Writer {
        store: store.clone(),
        path: path.to_owned(),
        key: key.clone(),
        skey,
        on_disk: on_disk.clone(),
        upload_id: None,
        parts: Vec::new(),
        buf: BytesMut::new(),
        pending: None,
        chunk_size: s.chunk_size(),
        size: 0,
        generation: on_disk.as_ref().map_or(0, |st| st.generation) + 1,
        replaces_plain: false,
        kept_tail: None,
        unchanged: false,
    };
    match on_disk {
        Some(st) if offset > 0 => {
            if offset > st.size {
                return Err(StorageError::InvalidRange(path.to_owned()));
            }
            let parts_size = st.parts_size();
            if offset < parts_size {
                // Parts of an unfinished multipart upload cannot be read back: complete it,
                // then copy the bytes to keep into a new upload. The registry never needs
                // this (it records an upload's offset before committing the data, so it
                // rewinds only into the tail), but the trait promises it.
                seal(&store, &key).await?;
                return Box::pin(open(s, path, key, offset)).await;
            }
            w.upload_id = st.upload_id.clone();
            w.parts = st.parts.clone();
            w.size = parts_size;
            let keep = offset - parts_size;
            if keep > 0 {
                let t = st.tail.clone().ok_or_else(|| StorageError::Io {
                    path: path.to_owned(),
                    source: std::io::Error::other("upload state has a size but no tail"),
                })?;
                // Fetched when the writer first writes: a writer that only ends an upload
                // where it stands (the registry's last PUT) costs no transfer.
                w.size = offset;
                w.kept_tail = Some((t, keep));
            }
            w.unchanged = offset == st.size;
        }
        Some(_) => {}
        None => {
            w.replaces_plain = match store.head(&key).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(map_err(path, e)),
            };
            if offset > 0 {
                // A plain object (a sealed one, say): stream the bytes to keep into a new
                // upload. Costly but bounded: one part in memory at a time.
                let obj = match store.head(&key).await {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(StorageError::InvalidRange(path.to_owned()));
                    }
                    Err(e) => return Err(map_err(path, e)),
                };
                if offset > obj.size {
                    return Err(StorageError::InvalidRange(path.to_owned()));
                }
                let mut st = store
                    .get_range(&key, 0..offset)
                    .await
                    .map(|b| futures::stream::once(async move { Ok::<_, object_store::Error>(b) }))
                    .map_err(|e| map_err(path, e))?
                    .boxed();
                while let Some(b) = st.next().await {
                    w.write(b.map_err(|e| map_err(path, e))?).await?;
                }
            }
        }
    }
    Ok(Box::new(w))
}

struct S3Writer {
    store: Arc<AmazonS3>,
    path: String,
    key: Path,
    skey: Path,
    /// The state when the writer was opened.
    on_disk: Option<State>,
    upload_id: Option<String>,
    /// Etags and sizes of the parts uploaded so far (including those from earlier writers).
    parts: Vec<Part>,
    /// Bytes not yet sent as a part.
    buf: BytesMut,
    /// The part being uploaded while the next one fills (one in flight keeps the stream moving
    /// without holding more than two parts).
    pending: Option<(u64, JoinHandle<object_store::Result<PartId>>)>,
    chunk_size: usize,
    /// Bytes in parts and `buf`.
    size: u64,
    generation: u64,
    /// A plain object sat at the key when the writer opened. It must go once the state is
    /// committed, or reads would find it rather than seal the new content.
    replaces_plain: bool,
    /// The start of the committed tail that this writer keeps (key, bytes), not yet fetched.
    kept_tail: Option<(String, u64)>,
    /// Opened at the committed size and nothing written since: committing changes nothing.
    unchanged: bool,
}

impl S3Writer {
    async fn fetch_kept_tail(&mut self) -> Result<()> {
        if let Some((t, keep)) = self.kept_tail.take() {
            let tail = self
                .store
                .get_range(&Path::from(t.as_str()), 0..keep)
                .await
                .map_err(|e| map_err(&self.path, e))?;
            debug_assert!(self.buf.is_empty());
            self.buf.extend_from_slice(&tail);
        }
        Ok(())
    }

    async fn upload_id(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let id = self
            .store
            .create_multipart(&self.key)
            .await
            .map_err(|e| map_err(&self.path, e))?;
        // Record the new upload in the committed state at once (changing nothing else), so
        // that it is aborted with the object even if this writer never commits.
        let mut st = self.on_disk.clone().unwrap_or_default();
        st.uploads.push(id.clone());
        save(&self.store, &self.skey, &st).await?;
        self.on_disk = Some(st);
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    async fn wait_pending(&mut self) -> Result<()> {
        if let Some((size, h)) = self.pending.take() {
            let part = h
                .await
                .map_err(|e| StorageError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                })?
                .map_err(|e| map_err(&self.path, e))?;
            self.parts.push(Part {
                etag: part.content_id,
                size,
            });
        }
        Ok(())
    }

    async fn send_part(&mut self, data: Bytes) -> Result<()> {
        let id = self.upload_id().await?;
        self.wait_pending().await?;
        let store = self.store.clone();
        let key = self.key.clone();
        let idx = self.parts.len();
        let size = data.len() as u64;
        self.pending = Some((
            size,
            tokio::spawn(
                async move { store.put_part(&key, &id, idx, PutPayload::from(data)).await },
            ),
        ));
        Ok(())
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.unchanged = false;
        self.fetch_kept_tail().await?;
        self.size += data.len() as u64;
        if self.buf.is_empty() && data.len() == self.chunk_size {
            return self.send_part(data).await;
        }
        self.buf.extend_from_slice(&data);
        while self.buf.len() >= self.chunk_size {
            let part = self.buf.split_to(self.chunk_size).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if self.unchanged {
            return Ok(());
        }
        self.fetch_kept_tail().await?;
        self.wait_pending().await?;
        let tail = if self.buf.is_empty() {
            None
        } else {
            let tkey = tail_key(&self.key, self.generation);
            self.store
                .put(&tkey, PutPayload::from(self.buf.split().freeze()))
                .await
                .map_err(|e| map_err(&self.path, e))?;
            Some(tkey)
        };
        let tail_size = self.size - self.parts.iter().map(|p| p.size).sum::<u64>();
        let st = State {
            upload_id: self.upload_id.clone(),
            uploads: self.upload_id.iter().cloned().collect(),
            parts: std::mem::take(&mut self.parts),
            tail: tail.as_ref().map(|t| t.to_string()),
            tail_size,
            size: self.size,
            generation: self.generation,
        };
        save(&self.store, &self.skey, &st).await?;
        if self.replaces_plain {
            self.store
                .delete(&self.key)
                .await
                .map_err(|e| map_err(&self.path, e))?;
        }
        // The new state is durable: what only the old one referred to can go.
        if let Some(old) = &self.on_disk {
            abort_all(
                &self.store,
                &self.key,
                &old.uploads,
                self.upload_id.as_deref(),
            )
            .await;
            if let Some(t) = &old.tail
                && Some(t) != st.tail.as_ref()
            {
                let _ = self.store.delete(&Path::from(t.as_str())).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_keys_sit_beside_the_object() {
        let k = Path::from("r/docker/_uploads/u/data");
        assert_eq!(
            state_key(&k).as_ref(),
            "r/docker/_uploads/u/.data.berth-upload"
        );
        assert_eq!(
            tail_key(&k, 3).as_ref(),
            "r/docker/_uploads/u/.data.berth-tail.3"
        );
        assert_eq!(object_of_state_key(&state_key(&k)), Some(k.clone()));
        assert_eq!(object_of_state_key(&k), None);
        assert_eq!(object_of_state_key(&tail_key(&k, 1)), None);
        assert_eq!(hidden_name(".data.berth-upload"), Some(Some("data")));
        assert_eq!(hidden_name(".data.berth-tail.3"), Some(None));
        assert_eq!(hidden_name("data"), None);
    }
}
