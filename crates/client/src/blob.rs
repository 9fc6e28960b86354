//! Blob downloads: a verified, resumable byte stream (interrupted downloads continue with
//! `Range`), and helpers that write it to any writer or a file. Blobs are never held in memory
//! whole.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use berth_oci::{Digest, Hasher};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use reqwest::Method;
use reqwest::header::RANGE;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::auth::Scope;
use crate::client::{Client, Req};
use crate::error::{Error, Result};

/// A stream of a blob's bytes. It ends with an error instead of `None` when the bytes do not
/// match the digest or size, so a consumer that forwards the stream (an upload) fails too.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// How often a dropped download is resumed before giving up.
const MAX_RESUMES: u32 = 5;

type Inner = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct State {
    client: Client,
    repo: String,
    digest: Digest,
    size: Option<u64>,
    offset: u64,
    hasher: Option<Hasher>,
    inner: Option<Inner>,
    /// Bytes still to drop from the start of a resumed response that ignored `Range`.
    skip: u64,
    resumes: u32,
    done: bool,
}

impl State {
    fn what(&self) -> String {
        format!(
            "blob {}/{}@{}",
            self.client.registry(),
            self.repo,
            self.digest
        )
    }

    async fn open(&mut self) -> Result<()> {
        let what = self.what();
        let url = self
            .client
            .url(&format!("/v2/{}/blobs/{}", self.repo, self.digest))
            .await?;
        let mut req = Req::new(Method::GET, url, Scope::pull(&self.repo), &what);
        if self.offset > 0 {
            req = req.header(RANGE, &format!("bytes={}-", self.offset));
        }
        let resp = self.client.send_expect(req, &[200, 206]).await?;
        if resp.status().as_u16() == 206 {
            let start = resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(self.offset) {
                return Err(self.client.protocol(format!(
                    "{what}: partial response does not start at {}",
                    self.offset
                )));
            }
            self.skip = 0;
        } else {
            self.skip = self.offset;
        }
        self.inner = Some(Box::pin(resp.bytes_stream()));
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let what = self.what();
        if let Some(size) = self.size
            && self.offset != size
        {
            return Err(self.client.protocol(format!(
                "{what}: expected {size} bytes, got {}",
                self.offset
            )));
        }
        let actual = self
            .hasher
            .take()
            .expect("hasher present until the end")
            .finish();
        if actual != self.digest {
            return Err(Error::DigestMismatch {
                what,
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if self.inner.is_none()
                && let Err(e) = self.open().await
            {
                self.done = true;
                return Some(Err(e));
            }
            match self.inner.as_mut().expect("opened").next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let n = (self.skip as usize).min(chunk.len());
                        self.skip -= n as u64;
                        chunk = chunk.slice(n..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.offset += chunk.len() as u64;
                    if let Some(size) = self.size
                        && self.offset > size
                    {
                        self.done = true;
                        let what = self.what();
                        return Some(Err(self
                            .client
                            .protocol(format!("{what}: more than the {size} bytes announced"))));
                    }
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    // Verify with the last byte, before handing it out (see `upload::hashing`).
                    if self.size == Some(self.offset) {
                        self.done = true;
                        if let Err(e) = self.finish() {
                            return Some(Err(e));
                        }
                    }
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    self.inner = None;
                    if self.resumes < MAX_RESUMES && self.size != Some(self.offset) {
                        self.resumes += 1;
                        tracing::debug!(blob = %self.digest, offset = self.offset, error = %e, "download interrupted, resuming");
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(self.resumes)))
                            .await;
                        continue;
                    }
                    self.done = true;
                    return Some(Err(self.client.transport_error(e)));
                }
                None => {
                    self.done = true;
                    return match self.finish() {
                        Ok(()) => None,
                        Err(e) => Some(Err(e)),
                    };
                }
            }
        }
    }
}

impl Client {
    /// Opens a blob for streaming. `size`, when known (from a descriptor), is checked too.
    /// The stream resumes interrupted downloads with `Range` and fails at the end if the bytes do
    /// not hash to `digest`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), berth_client::Error> {
    /// use futures::StreamExt as _;
    /// let client = berth_client::Client::new("127.0.0.1:5000", Default::default())?;
    /// let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
    /// let mut stream = client.blob_stream("app", &digest, None).await?;
    /// while let Some(chunk) = stream.next().await {
    ///     let chunk = chunk?;
    ///     println!("{} bytes", chunk.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn blob_stream(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<BlobStream> {
        let mut state = State {
            client: self.clone(),
            repo: repo.to_owned(),
            digest: digest.clone(),
            size,
            offset: 0,
            hasher: Some(Hasher::new(digest.algorithm())),
            inner: None,
            skip: 0,
            resumes: 0,
            done: false,
        };
        state.open().await?;
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut st| async move {
                let item = st.next().await?;
                Some((item, st))
            },
        )))
    }

    /// Downloads a blob into `writer`, verified. Returns the number of bytes written.
    pub async fn get_blob<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        repo: &str,
        digest: &Digest,
        writer: &mut W,
    ) -> Result<u64> {
        let mut stream = self.blob_stream(repo, digest, None).await?;
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| Error::io("writing blob", e))?;
            n += chunk.len() as u64;
        }
        writer
            .flush()
            .await
            .map_err(|e| Error::io("writing blob", e))?;
        Ok(n)
    }

    /// Downloads a blob into a file: written beside it first and renamed only once verified, so
    /// the file never holds unverified content.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), berth_client::Error> {
    /// let client = berth_client::Client::new("127.0.0.1:5000", Default::default())?;
    /// let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
    /// client.get_blob_to_file("app", &digest, std::path::Path::new("layer.tar.gz")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_blob_to_file(&self, repo: &str, digest: &Digest, path: &Path) -> Result<u64> {
        let tmp = partial_path(path);
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let res = self.get_blob(repo, digest, &mut f).await;
        drop(f);
        match res {
            Ok(n) => {
                tokio::fs::rename(&tmp, path)
                    .await
                    .map_err(|e| Error::io(format!("renaming to {}", path.display()), e))?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Downloads a small blob (such as a config) into memory, refusing more than `max` bytes.
    pub async fn get_blob_bytes(&self, repo: &str, digest: &Digest, max: usize) -> Result<Bytes> {
        let mut stream = self.blob_stream(repo, digest, None).await?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > max {
                return Err(Error::Invalid(format!(
                    "blob {digest} is larger than {max} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// `HEAD` on a blob: its size if the registry has it, `None` if not.
    pub async fn head_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let what = format!("blob {}/{repo}@{digest}", self.registry());
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}")).await?;
        let resp = self
            .send(Req::new(Method::HEAD, url, Scope::pull(repo), &what))
            .await?;
        match resp.status().as_u16() {
            // `content_length()` reflects the (empty) body of a HEAD: read the header itself.
            200 => Ok(Some(
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| self.protocol(format!("{what}: HEAD without Content-Length")))?,
            )),
            404 => Ok(None),
            _ => Err(self.error_from(resp, &what).await),
        }
    }

    /// The size of a blob, failing with [`Error::NotFound`] if the registry does not have it.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        self.head_blob(repo, digest)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("blob {}/{repo}@{digest}", self.registry()),
            })
    }

    /// Deletes a blob (registries often refuse; used for cleanup).
    pub async fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        let what = format!("blob {}/{repo}@{digest}", self.registry());
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}")).await?;
        self.send_expect(
            Req::new(Method::DELETE, url, Scope::push(repo), &what).deleting(),
            &[200, 202, 204],
        )
        .await?;
        Ok(())
    }
}

/// `file.partial` beside `file`.
pub(crate) fn partial_path(path: &Path) -> std::path::PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// Wraps any byte stream so that it fails at the end unless it hashed to `digest` with `size`
/// bytes (used for local sources such as OCI layouts).
pub(crate) fn verify_stream<S>(
    source: S,
    digest: Digest,
    size: Option<u64>,
    what: String,
) -> BlobStream
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    let state = (
        Box::pin(source),
        Some(Hasher::new(digest.algorithm())),
        0u64,
        false,
    );
    Box::pin(futures::stream::unfold(
        state,
        move |(mut src, mut hasher, mut n, done)| {
            let (digest, what) = (digest.clone(), what.clone());
            async move {
                if done {
                    return None;
                }
                match src.next().await {
                    Some(Ok(chunk)) => {
                        n += chunk.len() as u64;
                        if let Some(h) = hasher.as_mut() {
                            h.update(&chunk);
                        }
                        if size.is_some_and(|s| {
                            n > s || (n == s && hasher.clone().expect("hasher").finish() != digest)
                        }) {
                            let actual = hasher.take().expect("hasher").finish();
                            let e = Error::DigestMismatch {
                                what,
                                expected: digest,
                                actual,
                            };
                            return Some((Err(e), (src, hasher, n, true)));
                        }
                        Some((Ok(chunk), (src, hasher, n, false)))
                    }
                    Some(Err(e)) => Some((Err(e), (src, hasher, n, true))),
                    None => {
                        let actual = hasher.take().expect("hasher until the end").finish();
                        if actual != digest || size.is_some_and(|s| s != n) {
                            let e = Error::DigestMismatch {
                                what,
                                expected: digest,
                                actual,
                            };
                            return Some((Err(e), (src, hasher, n, true)));
                        }
                        None
                    }
                }
            }
        },
    ))
}
