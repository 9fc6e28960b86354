//! Progress reporting: the library calls a [`Reporter`]; the CLI implements it with progress bars.

use berth_oci::Digest;

/// What happened to one blob of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The bytes were transferred.
    Copied,
    /// The destination already had it.
    Skipped,
    /// The registry mounted it from another repository.
    Mounted,
}

/// Receives progress events. Every method has a no-op default; implementations must be cheap
/// (they are called for every chunk) and thread-safe (blobs move concurrently).
pub trait Reporter: Send + Sync {
    /// A blob transfer starts.
    fn blob_started(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more bytes of the blob went through.
    fn blob_progress(&self, _digest: &Digest, _bytes: u64) {}
    /// A transfer attempt failed and starts over (progress restarts at 0).
    fn blob_restarted(&self, _digest: &Digest) {}
    /// The blob is done.
    fn blob_finished(&self, _digest: &Digest, _outcome: BlobOutcome) {}
    /// A manifest was written to the destination under `reference` (a tag or digest).
    fn manifest_written(&self, _reference: &str, _digest: &Digest) {}
}

/// A [`Reporter`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Reporter for NoProgress {}
