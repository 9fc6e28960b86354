//! The streaming pipeline and archive passthrough, checked with gzip, pigz, zstd and
//! GNU tar.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::Path;

use crate::common::*;
use berth_builder::archive::{ArchiveOptions, layer_from_archive, layer_from_async_archive};
use berth_builder::compression::{Compression, MediaTypeFlavor};
use berth_builder::layer::{TarError, TarOptions, write_tar};
use berth_builder::pipeline::{LayerInfo, PipelineError, PipelineOptions, layer_from_dir};

fn rootfs() -> tempfile::TempDir {
    let dir = tempdir();
    make_rootfs(dir.path());
    dir
}

fn build(root: &Path, compression: Compression) -> (Vec<u8>, LayerInfo) {
    layer_from_dir(
        root,
        TarOptions::default(),
        PipelineOptions {
            compression,
            chunk_size: 256 * 1024,
            ..PipelineOptions::default()
        },
    )
    .blocking_collect()
    .unwrap()
}

fn plain_tar(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    write_tar(root, &TarOptions::default(), &mut out).unwrap();
    out
}

fn check_layer(blob: &[u8], info: &LayerInfo, tar: &[u8]) {
    assert_eq!(info.descriptor.digest, sha256(blob));
    assert_eq!(info.descriptor.size, blob.len() as u64);
    assert_eq!(info.diff_id, sha256(tar));
}

#[test]
fn gzip_layers_decompress_with_gzip_and_pigz() {
    let dir = rootfs();
    let tar = plain_tar(dir.path());
    for threads in [1, 2, 4] {
        let (blob, info) = build(dir.path(), Compression::Gzip { level: 6, threads });
        check_layer(&blob, &info, &tar);
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let decoded = pipe("gzip", &["-dc"], &blob);
        assert_eq!(
            sha256(&decoded),
            info.diff_id,
            "gzip -dc, {threads} threads"
        );
        if have("pigz") {
            let decoded = pipe("pigz", &["-dc"], &blob);
            assert_eq!(
                sha256(&decoded),
                info.diff_id,
                "pigz -dc, {threads} threads"
            );
        } else {
            eprintln!("pigz not installed (apt-get install pigz); pigz check skipped");
        }
        // GNU tar reads the compressed layer directly.
        pipe("tar", &["-tzf", "-"], &blob);
    }
}

#[test]
fn gzip_levels_all_work() {
    let dir = rootfs();
    let tar = plain_tar(dir.path());
    for level in [0, 1, 9] {
        for threads in [1, 2] {
            let (blob, info) = build(dir.path(), Compression::Gzip { level, threads });
            check_layer(&blob, &info, &tar);
            assert_eq!(sha256(&pipe("gzip", &["-dc"], &blob)), info.diff_id);
        }
    }
}

#[test]
fn zstd_layers_decompress_with_zstd() {
    if !have("zstd") {
        eprintln!("zstd not installed (apt-get install zstd); test skipped");
        return;
    }
    let dir = rootfs();
    let tar = plain_tar(dir.path());
    let mut digests = Vec::new();
    for (level, threads) in [(3, 1), (3, 2), (19, 2), (-5, 2)] {
        let (blob, info) = build(dir.path(), Compression::Zstd { level, threads });
        check_layer(&blob, &info, &tar);
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let decoded = pipe("zstd", &["-dc"], &blob);
        assert_eq!(sha256(&decoded), info.diff_id, "zstd level {level}");
        digests.push(info.descriptor.digest);
    }
    assert_eq!(
        digests[0], digests[1],
        "zstd output must not depend on threads"
    );
}

#[test]
fn uncompressed_layer_is_the_tar() {
    let dir = rootfs();
    let (blob, info) = build(dir.path(), Compression::None);
    assert_eq!(blob, plain_tar(dir.path()));
    assert_eq!(info.descriptor.digest, info.diff_id);
    assert_eq!(
        info.descriptor.media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
}

#[test]
fn reruns_are_identical() {
    let dir = rootfs();
    for compression in [Compression::gzip(), Compression::zstd(), Compression::None] {
        let (blob_a, a) = build(dir.path(), compression);
        let (blob_b, b) = build(dir.path(), compression);
        assert_eq!(a, b, "{compression:?}");
        assert!(blob_a == blob_b, "{compression:?}: blobs differ");
    }
}

#[test]
fn docker_media_types() {
    let dir = rootfs();
    let info = layer_from_dir(
        dir.path(),
        TarOptions::default(),
        PipelineOptions {
            flavor: MediaTypeFlavor::Docker,
            ..PipelineOptions::default()
        },
    )
    .blocking_finish()
    .unwrap();
    assert_eq!(
        info.descriptor.media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
}

#[test]
fn tar_errors_end_the_stream_with_an_error() {
    let dir = tempdir();
    let stream = layer_from_dir(
        dir.path().join("missing"),
        TarOptions::default(),
        PipelineOptions::default(),
    );
    let err = stream.blocking_finish().unwrap_err();
    assert!(
        matches!(err, PipelineError::Tar(TarError::RootfsMissing { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("missing"), "{err}");
}

/// How an async uploader uses the stream: one PATCH per chunk, then the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_uploader_sees_fixed_size_chunks_then_the_info() {
    let dir = rootfs();
    let chunk_size = 100 * 1024;
    let mut stream = layer_from_dir(
        dir.path().to_path_buf(),
        TarOptions::default(),
        PipelineOptions {
            compression: Compression::None,
            chunk_size,
            chunks_in_flight: 1,
            ..PipelineOptions::default()
        },
    );
    let mut uploaded = Vec::new();
    let mut sizes = Vec::new();
    while let Some(chunk) = stream.next_chunk().await {
        sizes.push(chunk.len());
        uploaded.extend_from_slice(&chunk); // PATCH
        tokio::task::yield_now().await;
    }
    let info = stream.finish().await.unwrap();
    assert!(sizes.len() > 2);
    assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == chunk_size));
    assert_eq!(info.descriptor.digest, sha256(&uploaded));
    assert_eq!(info.descriptor.size, uploaded.len() as u64);
}

fn gnu_tar_create(dir: &Path, out: &Path, flags: &str) {
    run(
        "tar",
        &[
            OsStr::new(flags),
            out.as_os_str(),
            OsStr::new("-C"),
            dir.as_os_str(),
            OsStr::new("."),
        ],
    );
}

fn archive(path: &Path) -> Result<(Vec<u8>, LayerInfo), PipelineError> {
    layer_from_archive(
        File::open(path).unwrap(),
        ArchiveOptions {
            chunk_size: 64 * 1024,
            ..ArchiveOptions::default()
        },
    )
    .blocking_collect()
}

#[test]
fn existing_archives_are_streamed_as_is() {
    let src = rootfs();
    let work = tempdir();
    let tar_path = work.path().join("layer.tar");
    let gz_path = work.path().join("layer.tar.gz");
    gnu_tar_create(src.path(), &tar_path, "-cf");
    gnu_tar_create(src.path(), &gz_path, "-czf");
    let tar = fs::read(&tar_path).unwrap();

    let (blob, info) = archive(&tar_path).unwrap();
    assert_eq!(blob, tar);
    assert_eq!(info.descriptor.digest, sha256(&tar));
    assert_eq!(info.diff_id, sha256(&tar));
    assert_eq!(
        info.descriptor.media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );

    let gz = fs::read(&gz_path).unwrap();
    let (blob, info) = archive(&gz_path).unwrap();
    assert!(blob == gz);
    assert_eq!(info.descriptor.digest, sha256(&gz));
    assert_eq!(info.descriptor.size, gz.len() as u64);
    assert_eq!(info.diff_id, sha256(&pipe("gzip", &["-dc"], &gz)));
    assert_eq!(
        info.descriptor.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    if have("zstd") {
        let zst_path = work.path().join("layer.tar.zst");
        run(
            "tar",
            &[
                OsStr::new("--zstd"),
                OsStr::new("-cf"),
                zst_path.as_os_str(),
                OsStr::new("-C"),
                src.path().as_os_str(),
                OsStr::new("."),
            ],
        );
        let zst = fs::read(&zst_path).unwrap();
        let (blob, info) = archive(&zst_path).unwrap();
        assert!(blob == zst);
        assert_eq!(info.diff_id, sha256(&pipe("zstd", &["-dc"], &zst)));
        assert_eq!(
            info.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    if have("pigz") {
        // pigz writes many deflate blocks, and `cat a.gz b.gz` is a valid gzip too.
        let pigz = pipe("pigz", &["-c", "-p", "2", "-b", "32"], &tar);
        let pigz_path = work.path().join("pigz.tar.gz");
        fs::write(&pigz_path, &pigz).unwrap();
        let (_, info) = archive(&pigz_path).unwrap();
        assert_eq!(info.diff_id, sha256(&tar));
    }
}

#[test]
fn our_own_layers_pass_archive_validation() {
    let dir = rootfs();
    let work = tempdir();
    for compression in [Compression::gzip(), Compression::zstd(), Compression::None] {
        let (blob, built) = build(dir.path(), compression);
        let path = work.path().join("blob");
        fs::write(&path, &blob).unwrap();
        let (_, streamed) = archive(&path).unwrap();
        assert_eq!(built, streamed, "{compression:?}");
    }
}

#[test]
fn truncated_or_corrupt_archives_fail() {
    let src = rootfs();
    let work = tempdir();
    let gz_path = work.path().join("layer.tar.gz");
    gnu_tar_create(src.path(), &gz_path, "-czf");
    let gz = fs::read(&gz_path).unwrap();
    let cut = work.path().join("cut.tar.gz");
    for keep in [10, gz.len() / 3, gz.len() / 2, gz.len() - 8, gz.len() - 1] {
        fs::write(&cut, &gz[..keep]).unwrap();
        let err = archive(&cut).expect_err(&format!("kept {keep} of {} bytes", gz.len()));
        assert!(
            matches!(err, PipelineError::InvalidArchive { .. }),
            "kept {keep}: {err}"
        );
        assert!(err.to_string().contains("must not be committed"), "{err}");
    }
    let mut corrupt = gz.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x55;
    fs::write(&cut, &corrupt).unwrap();
    assert!(archive(&cut).is_err());

    // A gzip-complete stream whose tar is cut: validated by the tar check.
    let tar_path = work.path().join("layer.tar");
    gnu_tar_create(src.path(), &tar_path, "-cf");
    let tar = fs::read(&tar_path).unwrap();
    let short_tar = pipe("gzip", &["-c"], &tar[..tar.len() / 2]);
    fs::write(&cut, &short_tar).unwrap();
    let err = archive(&cut).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[tokio::test]
async fn async_archive_from_a_tokio_file() {
    let src = rootfs();
    let work = tempdir();
    let gz_path = work.path().join("layer.tar.gz");
    gnu_tar_create(src.path(), &gz_path, "-czf");
    let file = tokio::fs::File::open(&gz_path).await.unwrap();
    let (blob, info) = layer_from_async_archive(file, ArchiveOptions::default())
        .collect()
        .await
        .unwrap();
    assert_eq!(info.descriptor.digest, sha256(&fs::read(&gz_path).unwrap()));
    assert_eq!(info.descriptor.digest, sha256(&blob));
}
