//! The storage suite and the S3-specific behaviour, against a real Garage node.

use berth_s3::{S3Config, S3Error, S3Storage};
use berth_storage::Storage;
use berth_test_support::garage::Garage;
use bytes::Bytes;
use futures::StreamExt;

async fn storage(g: &Garage, bucket: &str, root: &str) -> S3Storage {
    g.create_bucket(bucket);
    S3Storage::connect(S3Config {
        root_directory: root.into(),
        chunk_size: 5 << 20,
        ..g.s3_config(bucket)
    })
    .await
    .expect("connect")
}

async fn collect(s: &dyn Storage, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut st = s.get(path, None).await.expect("get").stream;
    while let Some(c) = st.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_storage_suite_passes_on_garage() {
    let g = Garage::single();
    let s = storage(&g, "suite", "/some/root/").await;
    berth_storage::suite::run_all(&s).await;
    // Keys sit under the root directory, as Distribution's S3 driver puts them.
    let bare = S3Storage::connect(g.s3_config("suite")).await.unwrap();
    assert_eq!(&bare.read("some/root/a/b/c", 10).await.unwrap()[..], b"bye");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_continues_on_another_instance_and_parts_stream() {
    let g = Garage::single();
    let a = storage(&g, "replicas", "").await;
    let b = S3Storage::connect(S3Config {
        chunk_size: 5 << 20,
        ..g.s3_config("replicas")
    })
    .await
    .unwrap();
    let part = |i: u8| Bytes::from(vec![i; 3 << 20]);
    let mut want = Vec::new();
    // Six commits alternating between two instances; 18 MiB in 5 MiB parts plus a tail.
    for i in 0..6u8 {
        let s: &S3Storage = if i % 2 == 0 { &a } else { &b };
        let mut w = s.writer("up/data", want.len() as u64).await.unwrap();
        w.write(part(i)).await.unwrap();
        w.commit().await.unwrap();
        want.extend_from_slice(&part(i));
        assert_eq!(s.stat("up/data").await.unwrap().size, want.len() as u64);
    }
    // A writer that breaks off (dropped without commit) changes nothing.
    let mut w = a.writer("up/data", want.len() as u64).await.unwrap();
    w.write(Bytes::from(vec![9u8; 7 << 20])).await.unwrap();
    drop(w);
    assert_eq!(b.stat("up/data").await.unwrap().size, want.len() as u64);
    // Rewinding into the tail keeps the bytes before the cut.
    let cut = want.len() as u64 - 1000;
    let mut w = b.writer("up/data", cut).await.unwrap();
    w.write(Bytes::from_static(b"end")).await.unwrap();
    w.commit().await.unwrap();
    want.truncate(cut as usize);
    want.extend_from_slice(b"end");
    a.rename("up/data", "blobs/x/data").await.unwrap();
    assert_eq!(collect(&b, "blobs/x/data").await, want);
    assert!(a.stat("up/data").await.unwrap_err().is_not_found());
    assert!(
        a.list("up").await.unwrap_err().is_not_found(),
        "nothing left of the upload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_upload_in_progress_leaves_nothing() {
    let g = Garage::single();
    let s = storage(&g, "abandon", "").await;
    let mut w = s.writer("u/1/data", 0).await.unwrap();
    w.write(Bytes::from(vec![1u8; 6 << 20])).await.unwrap();
    w.commit().await.unwrap();
    s.put("u/1/startedat", Bytes::from_static(b"t"))
        .await
        .unwrap();
    s.delete("u/1").await.unwrap();
    assert!(s.list("u").await.unwrap_err().is_not_found());
    assert!(s.stat("u/1/data").await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_or_a_missing_bucket_fail_at_start_with_a_clear_error() {
    let g = Garage::single();
    g.create_bucket("exists");
    let e = S3Storage::connect(g.s3_config("missing"))
        .await
        .err()
        .expect("missing bucket");
    assert!(matches!(e, S3Error::NoBucket { .. }), "{e:?}");
    assert!(e.to_string().contains("\"missing\" does not exist"), "{e}");
    let e = S3Storage::connect(S3Config {
        secret_key: Some("0".repeat(64)),
        ..g.s3_config("exists")
    })
    .await
    .err()
    .expect("bad secret");
    assert!(matches!(e, S3Error::AccessDenied { .. }), "{e:?}");
    assert!(
        !format!("{e} {e:?}").contains(&"0".repeat(64)),
        "secret in error"
    );
    let e = S3Storage::connect(S3Config {
        endpoint: Some("http://127.0.0.1:9".into()),
        ..g.s3_config("exists")
    })
    .await
    .err()
    .expect("unreachable");
    assert!(matches!(e, S3Error::Unreachable { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_fetch_the_object() {
    let g = Garage::single();
    let s = storage(&g, "presign", "").await;
    s.put("p/data", Bytes::from_static(b"signed"))
        .await
        .unwrap();
    let url = s
        .presigned_get("p/data", std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a URL");
    let out = std::process::Command::new("curl")
        .args(["-sf", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}");
    assert_eq!(out.stdout, b"signed");
}
