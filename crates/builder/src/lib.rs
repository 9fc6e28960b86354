//! Berth's image builder: image layers from folders or existing archives in one streaming
//! pass, image config edits, and the orchestration that pushes them ([`push`]: `push-layer`,
//! `append`, `mutate` as typed plans in, reports out). The layers are uploaded through
//! `berth-client`'s transfer engine; everything below [`push`] knows no registry and no HTTP.
//!
//! - [`push`]: new images and rebuilds of remote bases, pushed without pulling the base.
//! - [`layer`]: a deterministic tar of a rootfs folder (sorted, PAX for long/non-UTF-8
//!   names, hard links, devices, whiteouts, mtime clamp, owner override, filters).
//! - [`pipeline`]: tar → diff_id → gzip/zstd/none → blob digest → fixed-size chunks.
//! - [`archive`]: an existing `.tar`, `.tar.gz` or `.tar.zst` streamed as is, validated
//!   and hashed (diff_id) on the way.
//! - [`config_merge`]: YAML/JSON merge patches for the image config.
//! - [`image`]: image configs, manifests and indexes rebuilt around a new layer.
//! - [`labels`]: `org.opencontainers.image.*` labels from CI variables or git.
//! - [`compression`]: compression settings and layer media types.
//!
//! # Pipeline design
//!
//! A folder layer is produced by two dedicated OS threads (plus the compressor's own
//! workers) connected by bounded channels, and consumed from async code:
//!
//! ```text
//!  "berth-layer-tar" thread          "berth-layer-compress" thread         consumer (async)
//!  walk + tar::Builder               gzip (flate2 or gzp workers) /
//!  SHA-256 of the tar (diff_id) ──►  zstd (zstdmt workers) / none     ──►  LayerStream::next_chunk()
//!          std sync_channel,         SHA-256 + byte count of the blob       tokio mpsc, `chunks_in_flight`
//!          4 × 1 MiB buffers         chunking into `chunk_size` Bytes       chunks of `chunk_size`
//! ```
//!
//! Why this shape:
//! - **Hashing and compressing never wait for each other.** The tar thread reads files
//!   and hashes the uncompressed stream; the compressor runs on other cores. Both hashes
//!   are computed while the data streams, so there is **no temporary file** and the data
//!   is read once.
//! - **Bounded memory.** Every hand-over is a bounded channel: at most 4 raw buffers
//!   (1 MiB each) wait for the compressor, and at most `chunks_in_flight` chunks (4 MiB
//!   each by default) wait for the consumer, plus one chunk being filled and the
//!   compressor's own buffers (gzp: about 4 × threads blocks of 256 KiB; zstd: about
//!   20 MiB for two workers with 4 MiB jobs, growing with the worker count). When the
//!   consumer (a slow upload) falls behind, every stage blocks: the pipeline runs at the
//!   uploader's pace with a constant footprint, however big the layer (measured on 2
//!   cores for 512 MiB: +27 MiB peak RSS with gzip, under +50 MiB with zstd; see
//!   `tests/memory.rs`).
//! - **Plain OS threads, not `spawn_blocking`.** The work is long, CPU-bound and blocking,
//!   so it should not occupy Tokio's blocking pool or need a runtime at all; the stages
//!   hand over with `blocking_send`, and the consumer can be async (`next_chunk().await`)
//!   or sync (`blocking_next_chunk()`).
//! - **The outcome comes last.** The [`pipeline::LayerInfo`] (diff_id, blob digest, size,
//!   media type) is sent on a oneshot after the last chunk, and any failure (unreadable
//!   file, compressor error, truncated archive) replaces it with an error. An uploader
//!   therefore PATCHes chunks as they come, then awaits [`pipeline::LayerStream::finish`],
//!   and only then commits the upload (`PUT ?digest=`) and writes manifests. On failure
//!   the last partial chunk is withheld.
//! - **Deterministic, so retry = run again.** The same folder and options always give
//!   the same bytes and digests (sorted entries, no atime/ctime/user names, gzip header
//!   without time or OS, fixed gzp block size, zstd output independent of the worker
//!   count), so an uploader retries by starting the pipeline again, and can even run it
//!   once without uploading to learn the digest and skip blobs the registry already has.
//! - **Cancellation by drop.** Dropping the [`pipeline::LayerStream`] closes the chunk
//!   channel; the compressor's next send fails, it drops its input channel, and the tar
//!   thread's next send fails: all threads end promptly.
//!
//! Existing archives ([`archive`]) use the same output side: a reading thread hashes the
//! original bytes (blob digest) and chunks them to the consumer, while sharing each
//! buffer (reference-counted `Bytes`, no copy) with a validating thread that decompresses
//! it, hashes the tar (diff_id) and checks every header and entry plus the end-of-archive
//! marker.
//!
//! # Uploading from async code
//!
//! ```no_run
//! use berth_builder::layer::TarOptions;
//! use berth_builder::pipeline::{PipelineOptions, layer_from_dir};
//!
//! # async fn patch(_: bytes::Bytes) {}
//! # async fn commit(_: &berth_oci::Digest) {}
//! # async fn example() -> Result<(), berth_builder::pipeline::PipelineError> {
//! let tar = TarOptions { mtime_clamp: Some(1_700_000_000), ..TarOptions::default() };
//! let mut stream = layer_from_dir("rootfs", tar, PipelineOptions::default());
//! while let Some(chunk) = stream.next_chunk().await {
//!     patch(chunk).await; // PATCH /v2/<name>/blobs/uploads/<uuid>
//! }
//! let layer = stream.finish().await?; // Err => do not commit, do not write a manifest
//! commit(&layer.descriptor.digest).await; // PUT ...?digest=<digest>
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod archive;
pub mod compression;
pub mod config_merge;
pub mod image;
pub mod labels;
pub mod layer;
pub mod pipeline;
pub mod push;
