//! Registry behaviour over the real folder backend.

use std::sync::Arc;

use berth_oci::Digest;
use berth_registry::{Registry, RegistryConfig, RegistryError};
use berth_storage::{ByteStream, FolderStorage};
use bytes::Bytes;

fn registry(root: &std::path::Path, delete: bool) -> Registry {
    let storage = FolderStorage::new(root).unwrap();
    Registry::new(
        Arc::new(storage),
        RegistryConfig {
            delete_enabled: delete,
            ..Default::default()
        },
    )
}

fn body(parts: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(futures::stream::iter(
        parts.into_iter().map(|p| Ok(Bytes::from_static(p))),
    ))
}

fn broken_body(first: &'static [u8]) -> ByteStream {
    Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(first)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]))
}

#[tokio::test]
async fn chunked_upload_resumes_across_registry_instances() {
    let dir = tempfile::tempdir().unwrap();
    let want = Digest::sha256_of(b"hello, chunked world");
    let r = registry(dir.path(), false);
    let up = r.start_upload("a/b").await.unwrap();
    let st = r
        .write_upload("a/b", &up.id, Some(0), Some(7), body(vec![b"hello, "]))
        .await
        .unwrap();
    assert_eq!(st.offset, 7);
    // A broken request leaves the durable offset where it was.
    assert!(matches!(
        r.write_upload("a/b", &up.id, Some(7), None, broken_body(b"XXXX"))
            .await,
        Err(RegistryError::Body(_))
    ));
    // A new instance (a restarted server) continues from the saved state.
    let r2 = registry(dir.path(), false);
    assert_eq!(r2.upload_status("a/b", &up.id).await.unwrap().offset, 7);
    assert!(matches!(
        r2.write_upload("a/b", &up.id, Some(3), None, body(vec![b"zzz"]))
            .await,
        Err(RegistryError::RangeInvalid {
            given: 3,
            expected: 7
        })
    ));
    r2.write_upload("a/b", &up.id, Some(7), None, body(vec![b"chunked", b" "]))
        .await
        .unwrap();
    let info = r2
        .finish_upload(
            "a/b",
            &up.id,
            &want.to_string(),
            Some((body(vec![b"world"]), Some(5))),
        )
        .await
        .unwrap();
    assert_eq!((info.digest.clone(), info.size), (want.clone(), 20));
    assert_eq!(r2.stat_blob("a/b", &want).await.unwrap().size, 20);
    assert!(matches!(
        r2.upload_status("a/b", &up.id).await,
        Err(RegistryError::UploadUnknown(_))
    ));
}

#[tokio::test]
async fn digest_mismatch_discards_the_upload_and_shows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), false);
    let claimed = Digest::sha256_of(b"something else");
    let err = r
        .put_blob("x", &claimed.to_string(), body(vec![b"actual"]), Some(6))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestInvalid(_)), "{err}");
    assert!(matches!(
        r.stat_blob("x", &claimed).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    let actual = Digest::sha256_of(b"actual");
    assert!(matches!(
        r.stat_blob("x", &actual).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    let blobs = dir.path().join("docker/registry/v2/blobs");
    assert!(
        !blobs.exists() || walk_files(&blobs).is_empty(),
        "no blob data may be stored"
    );
    assert!(
        walk_files(
            &dir.path()
                .join("docker/registry/v2/repositories/x/_uploads")
        )
        .is_empty()
    );
}

#[tokio::test]
async fn short_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), false);
    let d = Digest::sha256_of(b"abc");
    let err = r
        .put_blob("x", &d.to_string(), body(vec![b"ab"]), Some(3))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::SizeInvalid(_)), "{err}");
    assert!(r.stat_blob("x", &d).await.is_err());
}

#[tokio::test]
async fn manifests_need_their_blobs_and_deletes_need_enabling() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), false);
    let cfg = Digest::sha256_of(b"{}");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":2}},"layers":[]}}"#
    );
    let err = r
        .put_manifest("m", "v1", None, Bytes::from(manifest.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestBlobUnknown(ref d) if *d == cfg),
        "{err}"
    );
    r.put_blob("m", &cfg.to_string(), body(vec![b"{}"]), None)
        .await
        .unwrap();
    let put = r
        .put_manifest("m", "v1", None, Bytes::from(manifest.clone()))
        .await
        .unwrap();
    let got = r.get_manifest("m", "v1").await.unwrap();
    assert_eq!(
        (got.digest, &got.bytes[..]),
        (put.digest.clone(), manifest.as_bytes())
    );
    assert!(matches!(
        r.delete_manifest("m", "v1").await,
        Err(RegistryError::Unsupported(_))
    ));
    let r = registry(dir.path(), true);
    r.delete_manifest("m", &put.digest.to_string())
        .await
        .unwrap();
    assert!(matches!(
        r.get_manifest("m", "v1").await,
        Err(RegistryError::ManifestUnknown(_))
    ));
    assert_eq!(
        r.list_tags("m", None, None).await.unwrap().0,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn purge_removes_only_old_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path(), false);
    r.put_blob(
        "p",
        &Digest::sha256_of(b"x").to_string(),
        body(vec![b"x"]),
        None,
    )
    .await
    .unwrap();
    let up = r.start_upload("p").await.unwrap();
    assert_eq!(
        r.purge_uploads(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(r.purge_uploads(std::time::Duration::ZERO).await.unwrap(), 1);
    assert!(r.upload_status("p", &up.id).await.is_err());
}

fn walk_files(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
