//! Blob uploads: one streaming request by default (`POST` then a single `PUT` carrying the body
//! when the digest is known, or one streaming `PATCH` then `PUT` when it is computed on the way),
//! chunked `PATCH`es when asked (honouring `OCI-Chunk-Min-Length`), and cross-repository mounts.
//! The digest is computed while streaming, once per hop: not again for a source that verifies
//! itself or computes it itself ([`Trust`]); a source whose bytes do not match the digest it was
//! announced with aborts the upload.

use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, Hasher};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use tokio::io::AsyncRead;

use crate::auth::Scope;
use crate::client::{Client, Req, UploadMode, urlencode};
use crate::error::{Error, Result};

/// The outcome of starting an upload.
enum Started {
    /// The registry mounted the blob from another repository: nothing to send.
    Mounted,
    /// An upload session to send the bytes to.
    Session {
        /// Where to send them.
        location: String,
        /// The registry's minimum chunk size, if it has one.
        min_chunk: Option<usize>,
    },
}

/// Shared slot where the hashing adapter leaves its result or the source's error. The digest
/// is `None` when the source reports it itself ([`Trust::Reports`]).
#[derive(Default)]
struct Outcome {
    result: Option<(Option<Digest>, u64)>,
    error: Option<Error>,
}

/// How far an upload may rely on its source instead of hashing the bytes itself: each byte
/// is hashed once per hop.
#[derive(Clone, Copy)]
pub(crate) enum Trust<'a> {
    /// The upload hashes every byte (and checks them against the known digest, if any).
    Nothing,
    /// The source fails unless its bytes match the known digest (a verified registry read).
    Verifies,
    /// The source computes the digest and size of what it streamed and says them once its
    /// stream has ended (a layer pipeline, which hashes the blob as it compresses it).
    Reports(&'a (dyn Fn() -> Option<(Digest, u64)> + Send + Sync)),
}

impl Trust<'_> {
    /// Whether the upload skips hashing, given whether a digest is known up front.
    fn skips_hashing(&self, known: bool) -> bool {
        match self {
            Trust::Nothing => false,
            Trust::Verifies => known,
            Trust::Reports(_) => !known,
        }
    }

    /// The digest the source reported after a stream of `sent` bytes.
    fn reported(&self, sent: u64) -> Result<Digest> {
        let Trust::Reports(report) = self else {
            return Err(Error::Invalid(
                "the upload source ended without its digest".into(),
            ));
        };
        match report() {
            Some((digest, size)) if size == sent => Ok(digest),
            Some((_, size)) => Err(Error::Invalid(format!(
                "the upload source reported {size} bytes but {sent} were sent"
            ))),
            None => Err(Error::Invalid(
                "the upload source ended without its digest".into(),
            )),
        }
    }
}

/// Wraps a source stream: hashes and counts it, checks it against the announced digest and size,
/// and keeps the source's own error (an HTTP client only sees an opaque body error). A
/// `trusted` source is only counted, not hashed again: with a known digest it verifies itself,
/// without one it reports its digest at the end ([`Trust`]).
fn hashing<S>(
    source: S,
    known: Option<(Digest, u64)>,
    outcome: Arc<Mutex<Outcome>>,
    trusted: bool,
) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    let algorithm = known
        .as_ref()
        .map(|(d, _)| d.algorithm())
        .unwrap_or(Algorithm::Sha256);
    let state = (
        Box::pin(source),
        Some(Hasher::new(algorithm)),
        0u64,
        known,
        outcome,
        false,
    );
    futures::stream::unfold(
        state,
        move |(mut src, mut hasher, mut n, known, outcome, done)| async move {
            if done {
                return None;
            }
            let fail = |outcome: &Arc<Mutex<Outcome>>, e: Error| {
                let msg = e.to_string();
                outcome.lock().expect("outcome lock").error = Some(e);
                std::io::Error::other(msg)
            };
            match src.next().await {
                Some(Ok(chunk)) => {
                    n += chunk.len() as u64;
                    if !trusted && let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    // With a known size, verify as soon as the last byte arrives: an HTTP client
                    // that sends a Content-Length stops polling the body once it has that many bytes,
                    // so an error at the end of the stream would never be seen. (A trusted source
                    // fails on its own last chunk.)
                    if let Some((expected, size)) = &known
                        && (n > *size
                            || (!trusted
                                && n == *size
                                && hasher.clone().expect("hasher").finish() != *expected))
                    {
                        let actual = hasher.take().expect("hasher").finish();
                        let e = Error::DigestMismatch {
                            what: format!("uploaded blob ({n} bytes, {size} announced)"),
                            expected: expected.clone(),
                            actual,
                        };
                        let err = fail(&outcome, e);
                        return Some((Err(err), (src, hasher, n, known, outcome, true)));
                    }
                    Some((Ok(chunk), (src, hasher, n, known, outcome, false)))
                }
                Some(Err(e)) => {
                    let err = fail(&outcome, e);
                    Some((Err(err), (src, hasher, n, known, outcome, true)))
                }
                None => {
                    let actual = match &known {
                        Some((expected, _)) if trusted => expected.clone(),
                        None if trusted => {
                            outcome.lock().expect("outcome lock").result = Some((None, n));
                            return None;
                        }
                        _ => hasher.take().expect("hasher until the end").finish(),
                    };
                    if let Some((expected, size)) = &known
                        && (*expected != actual || *size != n)
                    {
                        let e = Error::DigestMismatch {
                            what: format!("uploaded blob ({n} bytes, {size} announced)"),
                            expected: expected.clone(),
                            actual,
                        };
                        let err = fail(&outcome, e);
                        return Some((Err(err), (src, hasher, n, known, outcome, true)));
                    }
                    outcome.lock().expect("outcome lock").result = Some((Some(actual), n));
                    None
                }
            }
        },
    )
}

fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={}", urlencode(value))
}

impl Client {
    async fn start_upload(&self, repo: &str, mount: Option<(&Digest, &str)>) -> Result<Started> {
        let what = format!("upload to {}/{repo}", self.registry());
        let (path, scopes) = match mount {
            // Always `from`, the spec's parameter; never the non-standard `origin`.
            Some((d, from)) => (
                format!(
                    "/v2/{repo}/blobs/uploads/?mount={d}&from={}",
                    urlencode(from)
                ),
                vec![Scope::push(repo), Scope::pull(from)],
            ),
            None => (
                format!("/v2/{repo}/blobs/uploads/"),
                vec![Scope::push(repo)],
            ),
        };
        let url = self.url(&path).await?;
        let req = Req::with_scopes(Method::POST, url, scopes, &what).header(CONTENT_LENGTH, "0");
        let resp = self.send_expect(req, &[201, 202]).await?;
        if resp.status().as_u16() == 201 {
            return Ok(Started::Mounted);
        }
        let location = self.resolve_location(&resp)?;
        let min_chunk = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        Ok(Started::Session {
            location,
            min_chunk,
        })
    }

    /// Cancels an upload session, ignoring failures (cleanup only).
    async fn cancel_upload(&self, repo: &str, location: &str) {
        let req = Req::new(
            Method::DELETE,
            location.to_owned(),
            Scope::push(repo),
            "cancel upload",
        );
        let _ = self.send(req).await;
    }

    /// Mounts a blob from another repository of the same registry. Returns `false` when the
    /// registry declined (the caller then uploads).
    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        match self.start_upload(repo, Some((digest, from))).await? {
            Started::Mounted => Ok(true),
            Started::Session { location, .. } => {
                self.cancel_upload(repo, &location).await;
                Ok(false)
            }
        }
    }

    /// Uploads a blob from a stream of bytes. With `known` (digest and size, as from a
    /// descriptor) the bytes are checked against it while streaming and sent in one `PUT`;
    /// without it the digest is computed on the way (`PATCH` then `PUT`). With `mount_from`, a
    /// cross-repository mount is tried first. Returns the digest and size.
    pub async fn push_blob_stream<S>(
        &self,
        repo: &str,
        source: S,
        known: Option<(Digest, u64)>,
        mount_from: Option<&str>,
    ) -> Result<(Digest, u64)>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        let (digest, size, _) = self
            .upload_blob(repo, source, known, mount_from, Trust::Nothing)
            .await?;
        Ok((digest, size))
    }

    /// [`Client::push_blob_stream`], saying whether the registry mounted the blob. `trust`
    /// says whether the upload hashes the bytes or relies on the source ([`Trust`]).
    pub(crate) async fn upload_blob<S>(
        &self,
        repo: &str,
        source: S,
        known: Option<(Digest, u64)>,
        mount_from: Option<&str>,
        trust: Trust<'_>,
    ) -> Result<(Digest, u64, bool)>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        let mount = match (&known, mount_from) {
            (Some((d, _)), Some(from)) => Some((d, from)),
            _ => None,
        };
        let (location, min_chunk) = match self.start_upload(repo, mount).await? {
            Started::Mounted => {
                let (digest, size) = known.expect("mounts need a digest");
                return Ok((digest, size, true));
            }
            Started::Session {
                location,
                min_chunk,
            } => (location, min_chunk),
        };
        let res = match self.inner.opts.upload_mode {
            UploadMode::Chunked => {
                self.upload_chunked(repo, location.clone(), min_chunk, source, known, trust)
                    .await
            }
            UploadMode::Streaming => {
                self.upload_streaming(repo, location.clone(), source, known, trust)
                    .await
            }
        };
        if res.is_err() {
            self.cancel_upload(repo, &location).await;
        }
        res.map(|(digest, size)| (digest, size, false))
    }

    async fn upload_streaming<S>(
        &self,
        repo: &str,
        location: String,
        source: S,
        known: Option<(Digest, u64)>,
        trust: Trust<'_>,
    ) -> Result<(Digest, u64)>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        let what = format!("blob upload to {}/{repo}", self.registry());
        let trusted = trust.skips_hashing(known.is_some());
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let body =
            reqwest::Body::wrap_stream(hashing(source, known.clone(), outcome.clone(), trusted));
        let take_err =
            |outcome: &Arc<Mutex<Outcome>>| outcome.lock().expect("outcome lock").error.take();
        match &known {
            Some((digest, size)) => {
                let url = with_query(&location, "digest", &digest.to_string());
                let req = Req::new(Method::PUT, url, Scope::push(repo), &what)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, &size.to_string())
                    .stream(body);
                let res = self.send_expect(req, &[201, 204]).await;
                if let Some(e) = take_err(&outcome) {
                    return Err(e);
                }
                res?;
                Ok((digest.clone(), *size))
            }
            None => {
                let req = Req::new(Method::PATCH, location, Scope::push(repo), &what)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .stream(body);
                let res = self.send_expect(req, &[202, 204]).await;
                if let Some(e) = take_err(&outcome) {
                    return Err(e);
                }
                let resp = res?;
                let next = self.resolve_location(&resp)?;
                let (digest, size) = outcome
                    .lock()
                    .expect("outcome lock")
                    .result
                    .take()
                    .ok_or_else(|| {
                        Error::Invalid("upload source ended without finishing".into())
                    })?;
                let digest = match digest {
                    Some(d) => d,
                    None => trust.reported(size)?,
                };
                let url = with_query(&next, "digest", &digest.to_string());
                let req = Req::new(Method::PUT, url, Scope::push(repo), &what)
                    .header(CONTENT_LENGTH, "0");
                self.send_expect(req, &[201, 204]).await?;
                Ok((digest, size))
            }
        }
    }

    async fn upload_chunked<S>(
        &self,
        repo: &str,
        mut location: String,
        min_chunk: Option<usize>,
        source: S,
        known: Option<(Digest, u64)>,
        trust: Trust<'_>,
    ) -> Result<(Digest, u64)>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        let what = format!("chunked blob upload to {}/{repo}", self.registry());
        let trusted = trust.skips_hashing(known.is_some());
        let chunk_size = self
            .inner
            .opts
            .chunk_size
            .max(min_chunk.unwrap_or(1))
            .max(1);
        let algorithm = known
            .as_ref()
            .map(|(d, _)| d.algorithm())
            .unwrap_or(Algorithm::Sha256);
        let mut hasher = Hasher::new(algorithm);
        let mut source = Box::pin(source);
        let mut buf = BytesMut::with_capacity(chunk_size);
        let mut offset = 0u64;
        let mut ended = false;
        while !ended {
            while buf.len() < chunk_size {
                match source.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk?),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            // Keep the chunk size exact for every chunk but the last.
            let take = if ended { buf.len() } else { chunk_size };
            if take == 0 {
                break;
            }
            let chunk = buf.split_to(take).freeze();
            if !trusted {
                hasher.update(&chunk);
            }
            let end = offset + chunk.len() as u64 - 1;
            let req = Req::new(Method::PATCH, location.clone(), Scope::push(repo), &what)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, &chunk.len().to_string())
                .header(reqwest::header::CONTENT_RANGE, &format!("{offset}-{end}"))
                .bytes(chunk.clone());
            let resp = self.send_expect(req, &[202, 204]).await?;
            location = self.resolve_location(&resp)?;
            offset = end + 1;
        }
        let actual = match &known {
            Some((expected, _)) if trusted => expected.clone(),
            None if trusted => trust.reported(offset)?,
            _ => hasher.finish(),
        };
        if let Some((expected, size)) = &known
            && (*expected != actual || *size != offset)
        {
            return Err(Error::DigestMismatch {
                what,
                expected: expected.clone(),
                actual,
            });
        }
        let url = with_query(&location, "digest", &actual.to_string());
        let req = Req::new(Method::PUT, url, Scope::push(repo), &what).header(CONTENT_LENGTH, "0");
        self.send_expect(req, &[201, 204]).await?;
        Ok((actual, offset))
    }

    /// Uploads a blob from any async reader, computing its digest while streaming.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), berth_client::Error> {
    /// let client = berth_client::Client::new("127.0.0.1:5000", Default::default())?;
    /// let file = tokio::fs::File::open("layer.tar.gz").await.unwrap();
    /// let (digest, size) = client.push_blob_reader("app", file).await?;
    /// println!("{digest} {size}");
    /// # Ok(()) }
    /// ```
    pub async fn push_blob_reader<R>(&self, repo: &str, reader: R) -> Result<(Digest, u64)>
    where
        R: AsyncRead + Send + 'static,
    {
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
            .map(|r| r.map_err(|e| Error::io("reading upload source", e)));
        self.push_blob_stream(repo, stream, None, None).await
    }

    /// Uploads a small blob held in memory (a config, a manifest's empty blob).
    pub async fn push_blob_bytes(&self, repo: &str, bytes: Bytes) -> Result<Digest> {
        let digest = Digest::sha256_of(&bytes);
        let size = bytes.len() as u64;
        let stream = futures::stream::once(async move { Ok(bytes) });
        self.push_blob_stream(repo, stream, Some((digest.clone(), size)), None)
            .await?;
        Ok(digest)
    }
}
