//! The transfer engine: one way to push a blob, whatever its bytes come from.
//!
//! A [`BlobSource`] is a blob that can be read again from its first byte (a registry blob, a
//! file of an OCI layout, a layer being built), with its digest known up front or computed on
//! the way. [`Client::push_blob`] sends it, tries a cross-repository mount first when asked,
//! says whether the registry mounted it, and on a failure worth it ([`worth_resending`]) opens
//! the source again and sends it again. That loop is the only "reopen and resend" loop of the
//! client: copies and the builder use it too. Requests whose body is in memory are retried
//! one level lower, by the client's request loop with its [`RetryPolicy`](crate::RetryPolicy).

use std::future::Future;
use std::time::Duration;

use berth_oci::{Descriptor, Digest, media_type as mt};
use futures::future::BoxFuture;

use crate::blob::BlobStream;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::upload::Trust;

/// A blob whose bytes can be read from the start as many times as needed.
pub trait BlobSource: Send + Sync {
    /// The digest and size when known before reading (from a descriptor); `None` when they
    /// are computed while the bytes stream (a layer being built).
    fn known(&self) -> Option<(Digest, u64)>;

    /// Whether each stream [`BlobSource::open`] returns already fails unless its bytes match
    /// [`BlobSource::known`] (registry blobs and layout files are verified while read), so
    /// the upload does not hash the same bytes a second time.
    fn verifies(&self) -> bool {
        false
    }

    /// Whether the source computes the digest and size of the bytes it streams itself and
    /// says them through [`BlobSource::computed`] once a stream has ended (a layer pipeline
    /// hashes the blob as it compresses it), so the upload does not hash them a second time.
    /// Only consulted when [`BlobSource::known`] is `None`.
    fn computes(&self) -> bool {
        false
    }

    /// The digest and size of the latest stream, computed by the source; read after the
    /// stream has ended. `None` if the source does not compute them or failed.
    fn computed(&self) -> Option<(Digest, u64)> {
        None
    }

    /// Whether [`BlobSource::open`] may be called more than once (standard input may not).
    fn reopenable(&self) -> bool {
        true
    }

    /// A fresh stream of the bytes from the first one. The future owns what it needs, and
    /// does nothing until polled, so a successful mount costs no read.
    fn open(&self) -> BoxFuture<'static, Result<BlobStream>>;
}

/// What [`Client::push_blob`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedBlob {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the registry mounted it from another repository (no bytes were sent).
    pub mounted: bool,
}

/// How often [`Client::push_blob`] opens the source again after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendPolicy {
    /// Sends in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second send; the n-th waits n times as long.
    pub delay: Duration,
}

impl Default for ResendPolicy {
    fn default() -> Self {
        ResendPolicy {
            attempts: 3,
            delay: Duration::from_millis(200),
        }
    }
}

/// Whether a failed blob send is worth starting over from a reopened source: the connection
/// dropped or the registry failed (5xx, 429), a token expired mid-transfer (401), the upload
/// session vanished (404: restarted or expired), or the registry and the client no longer
/// agree on the offset (416, after a chunk broke off midway).
pub(crate) fn worth_resending(e: &Error) -> bool {
    e.is_transient()
        || e.is_not_found()
        || matches!(
            e,
            Error::Authentication { .. } | Error::Registry { status: 416, .. }
        )
}

/// Whether a manifest's layer lives outside the registry, so that a copy neither reads nor
/// writes its blob: a foreign (non-distributable) layer that says where it is (`urls`).
///
/// This is the rule registries enforce when a manifest is pushed (Distribution and Berth
/// require the blob of every other layer, a foreign one without `urls` included), and the
/// case both crane (by media type) and skopeo (by `urls`) skip.
pub fn lives_elsewhere(d: &Descriptor) -> bool {
    mt::is_foreign_layer(&d.media_type) && !d.urls.is_empty()
}

/// Runs `send` until it succeeds, fails in a way not [worth resending](worth_resending), or
/// has run `policy.attempts` times (once when the source cannot be reopened). The one
/// "reopen the source and send again" loop of the crate.
pub(crate) async fn resend<T, F, Fut>(
    reopenable: bool,
    policy: ResendPolicy,
    restarted: &(dyn Fn(&Error, u32) + Send + Sync),
    mut send: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let attempts = if reopenable {
        policy.attempts.max(1)
    } else {
        1
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send().await {
            Ok(done) => return Ok(done),
            Err(e) if attempt < attempts && worth_resending(&e) => {
                tracing::debug!(error = %e, attempt, "blob transfer failed, sending it again");
                restarted(&e, attempt + 1);
                tokio::time::sleep(policy.delay * attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Client {
    /// Pushes a blob to `repo`: with `mount_from` (a repository of this registry) and a
    /// digest known up front, a cross-repository mount is tried first; otherwise (or when
    /// the registry declines) the source is opened and sent, checked against its digest.
    /// A failure [worth resending](ResendPolicy) opens the source again, up to
    /// `policy.attempts` sends; `restarted` is called before each new send.
    pub async fn push_blob(
        &self,
        repo: &str,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
        policy: ResendPolicy,
        restarted: &(dyn Fn(&Error, u32) + Send + Sync),
    ) -> Result<PushedBlob> {
        resend(source.reopenable(), policy, restarted, || {
            self.push_blob_once(repo, source, mount_from)
        })
        .await
    }

    /// One send of [`Client::push_blob`], without resending.
    pub(crate) async fn push_blob_once(
        &self,
        repo: &str,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<PushedBlob> {
        let stream = futures::stream::once(source.open());
        let stream = futures::TryStreamExt::try_flatten(stream);
        let computed = || source.computed();
        let trust = if source.known().is_some() && source.verifies() {
            Trust::Verifies
        } else if source.known().is_none() && source.computes() {
            Trust::Reports(&computed)
        } else {
            Trust::Nothing
        };
        let (digest, size, mounted) = self
            .upload_blob(repo, stream, source.known(), mount_from, trust)
            .await?;
        Ok(PushedBlob {
            digest,
            size,
            mounted,
        })
    }
}

/// A blob of a repository, read with [`Client::blob_stream`] (verified while read).
pub struct RegistryBlob {
    client: Client,
    repo: String,
    digest: Digest,
    size: u64,
}

impl RegistryBlob {
    /// The blob `digest` of `size` bytes in `repo` of `client`'s registry.
    pub fn new(client: Client, repo: impl Into<String>, digest: Digest, size: u64) -> Self {
        RegistryBlob {
            client,
            repo: repo.into(),
            digest,
            size,
        }
    }
}

impl BlobSource for RegistryBlob {
    fn known(&self) -> Option<(Digest, u64)> {
        Some((self.digest.clone(), self.size))
    }
    fn verifies(&self) -> bool {
        true
    }
    fn open(&self) -> BoxFuture<'static, Result<BlobStream>> {
        let (client, repo, digest, size) = (
            self.client.clone(),
            self.repo.clone(),
            self.digest.clone(),
            self.size,
        );
        Box::pin(async move { client.blob_stream(&repo, &digest, Some(size)).await })
    }
}
