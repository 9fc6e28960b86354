//! The library against real registries on loopback: Debian's docker-registry (Distribution 2.8),
//! with htpasswd, and behind a fault-injecting proxy that demands bearer tokens.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use berth_client::{
    Client, CopyOptions, Digest, Error, ListOptions, Manifest, OciLayout, Platform, Platforms,
    RegistryRepo, UploadMode, copy,
};
use berth_test_support::{client::*, data::random_bytes, distribution::*, fault::*, net::*};
use bytes::Bytes;

#[tokio::test]
async fn push_inspect_list_and_delete() {
    let reg = DockerRegistry::start(false);
    let c = Client::new(&reg.addr, opts(None)).unwrap();
    c.ping().await.unwrap();
    let m = push_image(&c, "team/app", "v1", &["linux/amd64"], 2, 1000).await;

    // Manifest by tag and by digest, digest by HEAD.
    let got = c.get_manifest("team/app", "v1").await.unwrap();
    assert_eq!(got, m);
    assert_eq!(
        c.get_manifest("team/app", &m.digest.to_string())
            .await
            .unwrap()
            .bytes,
        m.bytes
    );
    let info = c.head_manifest("team/app", "v1").await.unwrap();
    assert_eq!(
        (info.digest.clone(), info.size),
        (m.digest.clone(), m.size())
    );
    assert_eq!(info.media_type, m.media_type);

    // Config and blobs, streamed and verified.
    let config = c.get_config("team/app", &m).await.unwrap();
    let parsed = m.parse().unwrap();
    assert_eq!(
        Digest::sha256_of(&config),
        parsed.config.as_ref().unwrap().digest
    );
    let layer = &parsed.layers[1];
    let mut out = Vec::new();
    assert_eq!(
        c.get_blob("team/app", &layer.digest, &mut out)
            .await
            .unwrap(),
        1000
    );
    assert_eq!(Digest::sha256_of(&out), layer.digest);
    assert_eq!(c.blob_size("team/app", &layer.digest).await.unwrap(), 1000);
    assert_eq!(
        c.head_blob("team/app", &Digest::sha256_of(b"nope"))
            .await
            .unwrap(),
        None
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layer");
    c.get_blob_to_file("team/app", &layer.digest, &file)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), out);

    // Tags with pagination, catalog, search.
    for t in ["v2", "v3", "v4"] {
        c.put_manifest("team/app", t, &m).await.unwrap();
    }
    c.put_manifest("other", "x", &{
        push_image(&c, "other", "x", &["linux/amd64"], 1, 10).await
    })
    .await
    .unwrap();
    assert_eq!(
        c.tags("team/app", None).await.unwrap(),
        ["v1", "v2", "v3", "v4"]
    );
    let page = ListOptions {
        page_size: Some(1),
        ..Default::default()
    };
    assert_eq!(
        c.tags("team/app", Some(&page)).await.unwrap(),
        ["v1", "v2", "v3", "v4"],
        "follows Link"
    );
    let after = ListOptions {
        last: Some("v2".into()),
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(c.tags("team/app", Some(&after)).await.unwrap(), ["v3"]);
    let digests = c
        .tag_digests("team/app", &["v1".into(), "v3".into()])
        .await
        .unwrap();
    assert!(digests.iter().all(|(_, d)| *d == m.digest));
    assert_eq!(c.catalog(None).await.unwrap(), ["other", "team/app"]);
    assert_eq!(
        c.catalog(Some(&ListOptions {
            page_size: Some(1),
            ..Default::default()
        }))
        .await
        .unwrap()
        .len(),
        2
    );
    assert_eq!(c.search("team/*").await.unwrap(), ["team/app"]);
    assert_eq!(c.search("oth").await.unwrap(), ["other"]);

    // Not found is a matchable error.
    assert!(matches!(
        c.get_manifest("team/app", "missing").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.digest("nope/nope", "latest").await,
        Err(Error::NotFound { .. })
    ));

    // Distribution 2.8 refuses tag deletion: nothing is deleted and the error says why.
    let err = c.delete_tag("team/app", "v2").await.unwrap_err();
    match &err {
        Error::TagDeleteUnsupported { digest, others, .. } => {
            assert_eq!(*digest, m.digest);
            assert!(others.contains("v1") && others.contains("v4"), "{others}");
        }
        other => panic!("expected TagDeleteUnsupported, got {other:?}"),
    }
    assert!(err.to_string().contains("only deletes manifests by digest"));
    assert_eq!(c.digest("team/app", "v2").await.unwrap(), m.digest);

    // Deleting by digest removes the manifest (and with it every tag).
    c.delete_manifest("team/app", &m.digest).await.unwrap();
    assert!(
        c.manifest_exists("team/app", &m.digest.to_string())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        c.get_manifest("team/app", "v1").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn uploads_streaming_chunked_and_from_reader() {
    let reg = DockerRegistry::start(false);
    let data = random_bytes(300_000);
    let want = Digest::sha256_of(&data);

    // Streaming, digest computed while sending (PATCH + PUT).
    let c = Client::new(&reg.addr, opts(None)).unwrap();
    let (d, n) = c
        .push_blob_reader("up", std::io::Cursor::new(data.clone()))
        .await
        .unwrap();
    assert_eq!((d.clone(), n), (want.clone(), 300_000));
    assert_eq!(c.blob_size("up", &want).await.unwrap(), 300_000);

    // Chunked with a small chunk size, into another repository.
    let chunked = Client::new(
        &reg.addr,
        berth_client::ClientOptions {
            upload_mode: UploadMode::Chunked,
            chunk_size: 64 * 1024,
            ..opts(None)
        },
    )
    .unwrap();
    let (d2, _) = chunked
        .push_blob_reader("up2", std::io::Cursor::new(data.clone()))
        .await
        .unwrap();
    assert_eq!(d2, want);
    let mut back = Vec::new();
    chunked.get_blob("up2", &want, &mut back).await.unwrap();
    assert_eq!(back, data);

    // A known digest that the bytes do not match: the upload fails and the registry has nothing.
    let wrong = Digest::sha256_of(b"something else");
    let stream = futures::stream::once(async { Ok(Bytes::from_static(b"actual bytes")) });
    let err = c
        .push_blob_stream("up3", stream, Some((wrong.clone(), 12)), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert_eq!(c.head_blob("up3", &wrong).await.unwrap(), None);

    // Cross-repository mount.
    assert!(c.mount_blob("up4", &want, "up").await.unwrap());
    assert_eq!(c.blob_size("up4", &want).await.unwrap(), 300_000);
}

/// A source that computes the digest of what it streams (as the builder's layer pipeline
/// does) and says a given one at the end.
struct SelfHashing {
    data: Bytes,
    says: (Digest, u64),
}

impl berth_client::BlobSource for SelfHashing {
    fn known(&self) -> Option<(Digest, u64)> {
        None
    }
    fn computes(&self) -> bool {
        true
    }
    fn computed(&self) -> Option<(Digest, u64)> {
        Some(self.says.clone())
    }
    fn open(
        &self,
    ) -> futures::future::BoxFuture<'static, berth_client::Result<berth_client::BlobStream>> {
        let data = self.data.clone();
        Box::pin(async move {
            Ok(Box::pin(futures::stream::iter(
                data.chunks(50_000)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            )) as berth_client::BlobStream)
        })
    }
}

#[tokio::test]
async fn a_source_that_computes_its_digest_is_not_hashed_again_and_still_checked() {
    let reg = DockerRegistry::start(false);
    let data = Bytes::from(random_bytes(300_000));
    let want = Digest::sha256_of(&data);
    let streaming = Client::new(&reg.addr, opts(None)).unwrap();
    let chunked = Client::new(
        &reg.addr,
        berth_client::ClientOptions {
            upload_mode: UploadMode::Chunked,
            chunk_size: 64 * 1024,
            ..opts(None)
        },
    )
    .unwrap();
    let policy = berth_client::ResendPolicy::default();
    for (mode, c) in [("streaming", &streaming), ("chunked", &chunked)] {
        let repo = format!("self/{mode}");
        let honest = SelfHashing {
            data: data.clone(),
            says: (want.clone(), 300_000),
        };
        let pushed = c
            .push_blob(&repo, &honest, None, policy, &|_, _| {})
            .await
            .unwrap();
        assert_eq!(
            (pushed.digest, pushed.size, pushed.mounted),
            (want.clone(), 300_000, false)
        );
        assert_eq!(c.blob_size(&repo, &want).await.unwrap(), 300_000, "{mode}");

        // The registry verifies what the source says: a wrong digest commits nothing.
        let wrong = Digest::sha256_of(b"not these bytes");
        let liar = SelfHashing {
            data: data.clone(),
            says: (wrong.clone(), 300_000),
        };
        let err = c
            .push_blob(&format!("{repo}-liar"), &liar, None, policy, &|_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Registry { status: 400, .. }),
            "{mode}: {err:?}"
        );
        assert_eq!(
            c.head_blob(&format!("{repo}-liar"), &wrong).await.unwrap(),
            None
        );

        // A size that is not what was streamed fails before the commit.
        let short = SelfHashing {
            data: data.clone(),
            says: (want.clone(), 299_999),
        };
        let err = c
            .push_blob(&format!("{repo}-short"), &short, None, policy, &|_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{mode}: {err:?}");
        assert_eq!(
            c.head_blob(&format!("{repo}-short"), &want).await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn copy_multi_arch_between_registries_keeps_digests() {
    let a = DockerRegistry::start(false);
    let b = DockerRegistry::start(false);
    let ca = Client::new(&a.addr, opts(None)).unwrap();
    let cb = Client::new(&b.addr, opts(None)).unwrap();
    let index = push_image(
        &ca,
        "src/app",
        "v1",
        &["linux/amd64", "linux/arm64"],
        2,
        50_000,
    )
    .await;

    let src = RegistryRepo::new(ca.clone(), "src/app");
    let dst = RegistryRepo::new(cb.clone(), "dst/app");
    let report = copy(&src, "v1", &dst, "v1", &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&index.digest));
    assert_eq!(report.manifests, 3);
    // 1 shared layer + 2 × (2 layers + config).
    assert_eq!((report.blobs_copied, report.blobs_skipped), (7, 0));
    assert_eq!(cb.digest("dst/app", "v1").await.unwrap(), index.digest);
    assert_eq!(
        cb.get_manifest("dst/app", "v1").await.unwrap().bytes,
        index.bytes
    );
    assert_eq!(
        all_blobs(&cb, "dst/app", &index).await,
        all_blobs(&ca, "src/app", &index).await
    );

    // Again: everything is there already.
    let again = copy(&src, "v1", &dst, "v2", &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(again.blobs_copied, 0);
    assert_eq!(again.digest.as_ref(), Some(&index.digest));

    // One platform: its manifest, tagged on its own.
    let arm: Platform = "linux/arm64".parse().unwrap();
    let one = CopyOptions {
        platforms: Platforms::One(arm.clone()),
        ..Default::default()
    };
    let r = copy(
        &src,
        "v1",
        &RegistryRepo::new(cb.clone(), "arm"),
        "only",
        &one,
    )
    .await
    .unwrap();
    let arm_manifest = ca
        .resolve_platform("src/app", index.clone(), &arm)
        .await
        .unwrap();
    assert_eq!(r.digest.as_ref(), Some(&arm_manifest.digest));
    assert_eq!(
        cb.get_manifest("arm", "only").await.unwrap().media_type,
        berth_oci::media_type::OCI_MANIFEST
    );

    // A subset: a new index with only those entries.
    let some = CopyOptions {
        platforms: Platforms::Some(vec![arm.clone()]),
        ..Default::default()
    };
    let r = copy(
        &src,
        "v1",
        &RegistryRepo::new(cb.clone(), "subset"),
        "s",
        &some,
    )
    .await
    .unwrap();
    let sub = cb.get_manifest("subset", "s").await.unwrap();
    assert!(sub.is_index());
    assert_eq!(sub.parse().unwrap().manifests.len(), 1);
    assert_eq!(r.digest.as_ref(), Some(&sub.digest));

    // Missing platform.
    let none = CopyOptions {
        platforms: Platforms::One("windows/amd64".parse().unwrap()),
        ..Default::default()
    };
    assert!(matches!(
        copy(&src, "v1", &dst, "w", &none).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn copy_within_a_registry_mounts_with_from() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, None).await;
    let c = Client::new(&proxy.addr, opts(None)).unwrap();
    let m = push_image(&c, "a", "v1", &["linux/amd64"], 2, 1000).await;
    let report = copy(
        &RegistryRepo::new(c.clone(), "a"),
        "v1",
        &RegistryRepo::new(c.clone(), "b"),
        "v1",
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_mounted, 4, "{report:?}");
    assert_eq!(report.bytes_copied, 0);
    assert_eq!(c.digest("b", "v1").await.unwrap(), m.digest);
    let reqs = proxy.requests();
    let mounts: Vec<&String> = reqs.iter().filter(|r| r.contains("mount=")).collect();
    assert_eq!(mounts.len(), 4);
    assert!(
        mounts
            .iter()
            .all(|r| r.contains("from=a") && !r.contains("origin=")),
        "{mounts:?}"
    );
    // No blob was downloaded.
    assert!(
        !reqs.iter().any(|r| r.starts_with("GET /v2/a/blobs/")),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    let reg = DockerRegistry::start_htpasswd("alice", "s3cret");
    let good = Client::new(&reg.addr, opts(Some(("alice", "s3cret")))).unwrap();
    good.ping().await.unwrap();
    let m = push_image(&good, "priv", "v1", &["linux/amd64"], 1, 100).await;
    assert_eq!(good.digest("priv", "v1").await.unwrap(), m.digest);

    let bad = Client::new(&reg.addr, opts(Some(("alice", "wrong")))).unwrap();
    let err = bad.get_manifest("priv", "v1").await.unwrap_err();
    assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
    let anon = Client::new(&reg.addr, opts(None)).unwrap();
    let err = anon.tags("priv", None).await.unwrap_err();
    assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
    assert!(err.is_auth());
}

#[tokio::test]
async fn credentials_from_docker_config() {
    let reg = DockerRegistry::start_htpasswd("bob", "pw");
    let dir = tempfile::tempdir().unwrap();
    berth_client::credentials::store_docker_login(
        dir.path(),
        &reg.addr,
        &berth_client::Credentials::basic("bob", "pw"),
    )
    .unwrap();
    let o = berth_client::ClientOptions {
        keychain: berth_client::Keychain::anonymous().with_docker_config(dir.path()),
        ..opts(None)
    };
    let c = Client::new(&reg.addr, o).unwrap();
    c.ping().await.unwrap();
    push_image(&c, "x", "v1", &["linux/amd64"], 1, 10).await;
    assert_eq!(c.tags("x", None).await.unwrap(), ["v1"]);
}

#[tokio::test]
async fn bearer_tokens_scoped_cached_and_refreshed() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, Some(("u", "p"))).await;
    let c = Client::new(&proxy.addr, opts(Some(("u", "p")))).unwrap();
    c.ping().await.unwrap();
    let m = push_image(
        &c,
        "tok/app",
        "v1",
        &["linux/amd64", "linux/arm64"],
        1,
        5000,
    )
    .await;
    assert_eq!(c.digest("tok/app", "v1").await.unwrap(), m.digest);
    let issued = proxy.seen().tokens_issued.load(Ordering::SeqCst);
    // Cached per scope: pushing an image and reading it needed few tokens, not one per request.
    assert!(
        issued <= 4,
        "{issued} tokens for {} requests",
        proxy.requests().len()
    );
    let scopes = proxy.seen().scopes.lock().unwrap().clone();
    assert!(
        scopes.contains(&"repository:tok/app:pull,push".to_owned()),
        "{scopes:?}"
    );
    assert!(
        scopes.contains(&"repository:tok/app:pull".to_owned()),
        "{scopes:?}"
    );

    // Catalog needs its own scope.
    assert_eq!(c.catalog(None).await.unwrap(), ["tok/app"]);

    // Tokens expire in the middle of a copy: refresh and continue.
    let other = DockerRegistry::start(false);
    let dst = Client::new(&other.addr, opts(None)).unwrap();
    proxy.faults(|f| f.token_max_uses = Some(3));
    let report = copy(
        &RegistryRepo::new(c.clone(), "tok/app"),
        "v1",
        &RegistryRepo::new(dst.clone(), "copy"),
        "v1",
        &CopyOptions {
            concurrency: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&m.digest));
    assert!(proxy.seen().tokens_issued.load(Ordering::SeqCst) > issued + 1);

    // Wrong password: authentication error from the token endpoint.
    proxy.faults(|f| f.token_max_uses = None);
    let bad = Client::new(&proxy.addr, opts(Some(("u", "nope")))).unwrap();
    assert!(matches!(
        bad.tags("tok/app", None).await,
        Err(Error::Authentication { .. })
    ));
    let anon = Client::new(&proxy.addr, opts(None)).unwrap();
    assert!(matches!(
        anon.tags("tok/app", None).await,
        Err(Error::Authentication { .. })
    ));
}

#[tokio::test]
async fn redirects_never_carry_credentials_to_another_origin() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, Some(("u", "p"))).await;
    let c = Client::new(&proxy.addr, opts(Some(("u", "p")))).unwrap();
    let m = push_image(&c, "r", "v1", &["linux/amd64"], 1, 70_000).await;
    proxy.faults(|f| f.redirect_blobs = true);
    let layer = &m.parse().unwrap().layers[1];
    let mut out = Vec::new();
    c.get_blob("r", &layer.digest, &mut out).await.unwrap();
    assert_eq!(Digest::sha256_of(&out), layer.digest);
    assert!(proxy.seen().storage_hits.load(Ordering::SeqCst) >= 1);
    assert!(
        !proxy.seen().storage_saw_auth.load(Ordering::SeqCst),
        "Authorization leaked to another origin"
    );
}

#[tokio::test]
async fn credentials_go_to_a_realm_on_another_host_only_over_https_or_when_allowed() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, Some(("u", "p"))).await;
    // The 401 names a token service on another host name, over plain HTTP.
    proxy.faults(|f| f.realm_host = Some("localhost".into()));
    let c = Client::new(&proxy.addr, opts(Some(("u", "p")))).unwrap();
    let err = c.get_manifest("r", "v1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Authentication { message, .. } if message.contains("plain HTTP") && message.contains("not sent")),
        "{err:?}"
    );
    assert_eq!(proxy.seen().tokens_issued.load(Ordering::SeqCst), 0);
    // Listing the realm's host as insecure allows it.
    let port = proxy.addr.rsplit(':').next().unwrap();
    let mut allowed = opts(Some(("u", "p")));
    allowed.insecure_registries = vec![format!("localhost:{port}")];
    let c = Client::new(&proxy.addr, allowed).unwrap();
    push_image(&c, "r", "v1", &["linux/amd64"], 1, 10).await;
    assert!(proxy.seen().tokens_issued.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn retries_429_and_5xx_honouring_retry_after() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, None).await;
    let c = Client::new(&proxy.addr, opts(None)).unwrap();
    let m = push_image(&c, "retry", "v1", &["linux/amd64"], 1, 100).await;
    proxy.faults(|f| f.fail_next = vec![(429, Some("0".into())), (503, None), (502, None)]);
    assert_eq!(c.digest("retry", "v1").await.unwrap(), m.digest);
    // Too many failures: the error is the registry's, and says so.
    proxy.faults(|f| f.fail_next = vec![(503, None); 10]);
    let err = c.digest("retry", "v1").await.unwrap_err();
    assert!(
        matches!(err, Error::Registry { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn interrupted_downloads_resume_with_range() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, None).await;
    let c = Client::new(&proxy.addr, opts(None)).unwrap();
    let data = random_bytes(500_000);
    let (d, _) = c
        .push_blob_reader("cut", std::io::Cursor::new(data.clone()))
        .await
        .unwrap();
    proxy.faults(|f| f.cut_blob_once = Some((d.to_string(), 123_456)));
    let mut out = Vec::new();
    assert_eq!(c.get_blob("cut", &d, &mut out).await.unwrap(), 500_000);
    assert_eq!(out, data);
    assert!(
        proxy.seen().range_requests.load(Ordering::SeqCst) >= 1,
        "resumed with Range"
    );
}

#[tokio::test]
async fn corrupt_blob_fails_the_copy_and_nothing_is_tagged() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, None).await;
    let dst_reg = DockerRegistry::start(false);
    let c = Client::new(&proxy.addr, opts(None)).unwrap();
    let dst = Client::new(&dst_reg.addr, opts(None)).unwrap();
    let m = push_image(&c, "bad", "v1", &["linux/amd64"], 2, 20_000).await;
    let victim = m.parse().unwrap().layers[2].digest.clone();
    proxy.faults(|f| f.corrupt_blob = Some(victim.to_string()));
    let err = copy(
        &RegistryRepo::new(c.clone(), "bad"),
        "v1",
        &RegistryRepo::new(dst.clone(), "bad"),
        "v1",
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(
        dst.manifest_exists("bad", "v1").await.unwrap().is_none(),
        "nothing tagged"
    );
    assert_eq!(dst.head_blob("bad", &victim).await.unwrap(), None);

    // Also a plain download of it.
    let mut sink = Vec::new();
    assert!(matches!(
        c.get_blob("bad", &victim, &mut sink).await,
        Err(Error::DigestMismatch { .. })
    ));
}

#[tokio::test]
async fn tampered_manifest_is_refused() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, None).await;
    let c = Client::new(&proxy.addr, opts(None)).unwrap();
    let m = push_image(&c, "t", "v1", &["linux/amd64"], 1, 10).await;
    proxy.faults(|f| f.tamper_manifests = true);
    let by_digest = c
        .get_manifest("t", &m.digest.to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(by_digest, Error::DigestMismatch { .. }),
        "{by_digest:?}"
    );
    let by_tag = c.get_manifest("t", "v1").await.unwrap_err();
    assert!(
        matches!(by_tag, Error::DigestMismatch { .. }),
        "checked against Docker-Content-Digest: {by_tag:?}"
    );
}

#[tokio::test]
async fn html_garbage_and_unreachable_registries() {
    let backend = DockerRegistry::start(true);
    let proxy = FrontProxy::start(&backend.addr, None).await;
    proxy.faults(|f| f.html = true);
    let c = Client::new(&proxy.addr, opts(None)).unwrap();
    assert!(matches!(c.ping().await, Err(Error::Protocol { .. })));
    assert!(matches!(
        c.get_manifest("x", "v1").await,
        Err(Error::Protocol { .. })
    ));
    assert!(matches!(
        c.tags("x", None).await,
        Err(Error::Protocol { .. })
    ));

    let port = free_port();
    let nobody = Client::new(&format!("127.0.0.1:{port}"), opts(None)).unwrap();
    let err = nobody.ping().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(matches!(
        Client::new("not a host", opts(None)),
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn referrers_fall_back_to_the_tag_schema() {
    let reg = DockerRegistry::start(false);
    let c = Client::new(&reg.addr, opts(None)).unwrap();
    let subject = push_image(&c, "ref", "v1", &["linux/amd64"], 1, 10).await;
    let empty = c
        .push_blob_bytes("ref", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.size()},
    });
    let a = Manifest::from_bytes(serde_json::to_vec(&artifact).unwrap(), None).unwrap();
    c.put_manifest("ref", &a.digest.to_string(), &a)
        .await
        .unwrap();
    let list = c.referrers("ref", &subject.digest, None).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].digest, a.digest);
    assert_eq!(
        list[0].artifact_type.as_deref(),
        Some("application/vnd.example.sbom")
    );
    assert!(
        c.referrers("ref", &subject.digest, Some("other/type"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.tags("ref", None).await.unwrap(),
        vec![berth_client::fallback_tag(&subject.digest), "v1".to_owned()]
    );
}

#[tokio::test]
async fn pull_to_and_push_from_an_oci_layout() {
    let a = DockerRegistry::start(false);
    let b = DockerRegistry::start(false);
    let ca = Client::new(&a.addr, opts(None)).unwrap();
    let cb = Client::new(&b.addr, opts(None)).unwrap();
    let index = push_image(&ca, "app", "v1", &["linux/amd64", "linux/arm64"], 1, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).await.unwrap();
    let progress = Arc::new(Counting::default());
    let o = CopyOptions {
        reporter: progress.clone(),
        ..Default::default()
    };
    let r = copy(
        &RegistryRepo::new(ca.clone(), "app"),
        "v1",
        &layout,
        "v1",
        &o,
    )
    .await
    .unwrap();
    assert_eq!(r.digest.as_ref(), Some(&index.digest));
    assert_eq!(layout.names().await.unwrap(), ["v1"]);
    assert_eq!(progress.bytes.load(Ordering::SeqCst), r.bytes_copied);
    for d in all_blobs(&ca, "app", &index).await {
        assert!(layout.blob_path(&d).exists());
    }
    let reopened = OciLayout::open(dir.path()).await.unwrap();
    let r2 = copy(
        &reopened,
        "v1",
        &RegistryRepo::new(cb.clone(), "pushed"),
        "v1",
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(r2.digest.as_ref(), Some(&index.digest));
    assert_eq!(cb.digest("pushed", "v1").await.unwrap(), index.digest);
    // A corrupted layout blob is caught before anything is tagged.
    let victim = all_blobs(&ca, "app", &index).await.pop().unwrap();
    std::fs::write(reopened.blob_path(&victim), b"garbage").unwrap();
    let err = copy(
        &reopened,
        "v1",
        &RegistryRepo::new(cb.clone(), "pushed2"),
        "v1",
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(cb.manifest_exists("pushed2", "v1").await.unwrap().is_none());
    assert!(OciLayout::open(&dir.path().join("nope")).await.is_err());
}

#[derive(Default)]
struct Counting {
    bytes: std::sync::atomic::AtomicU64,
}

impl berth_client::Reporter for Counting {
    fn blob_progress(&self, _d: &Digest, n: u64) {
        self.bytes.fetch_add(n, Ordering::SeqCst);
    }
}

/// This process's resident memory, in MiB.
fn rss_mib() -> u64 {
    berth_test_support::process::rss_mib(std::process::id())
}

#[tokio::test]
async fn bodies_that_never_end_are_cut_short() {
    let backend = DockerRegistry::start(true);
    let before = rss_mib();
    let limit = std::time::Duration::from_secs(60);
    // An error body that never ends: the error still comes (after the retries of a 500).
    let proxy = FrontProxy::start(&backend.addr, None).await;
    proxy.faults(|f| f.endless_body = Some(500));
    let c = Client::new(&proxy.addr, opts(None)).unwrap();
    let err = tokio::time::timeout(limit, c.get_manifest("x", "v1"))
        .await
        .expect("an endless error body was read without end")
        .unwrap_err();
    assert!(
        matches!(err, Error::Registry { status: 500, .. }),
        "{err:?}"
    );
    // A listing page that never ends: refused, with a sentence.
    proxy.faults(|f| f.endless_body = Some(200));
    let err = tokio::time::timeout(limit, c.tags("x", None))
        .await
        .expect("an endless listing was read without end")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { message, .. } if message.contains("larger than")),
        "{err:?}"
    );
    // A token response that never ends.
    let proxy = FrontProxy::start(&backend.addr, Some(("u", "p"))).await;
    proxy.faults(|f| f.endless_token = true);
    let c = Client::new(&proxy.addr, opts(Some(("u", "p")))).unwrap();
    let err = tokio::time::timeout(limit, c.get_manifest("x", "v1"))
        .await
        .expect("an endless token response was read without end")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { message, .. } if message.contains("token endpoint")),
        "{err:?}"
    );
    let grew = rss_mib().saturating_sub(before);
    assert!(grew < 100, "memory grew by {grew} MiB");
}

#[tokio::test]
async fn index_chains_deeper_than_any_image_are_refused_with_a_sentence() {
    let reg = DockerRegistry::start(false);
    let c = Client::new(&reg.addr, opts(None)).unwrap();
    let mut top = push_image(&c, "deep", "base", &["linux/amd64"], 1, 10).await;
    // Distribution 2.8 stores an index whose children it holds, so build the chain upwards.
    let depth = berth_client::MAX_INDEX_DEPTH + 4;
    for _ in 0..depth {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": top.media_type, "digest": top.digest.to_string(), "size": top.size()}],
        });
        top = Manifest::from_bytes(serde_json::to_vec(&index).unwrap(), None).unwrap();
        c.put_manifest("deep", &top.digest.to_string(), &top)
            .await
            .unwrap();
    }
    c.put_manifest("deep", "chain", &top).await.unwrap();
    let dst = DockerRegistry::start(false);
    let cd = Client::new(&dst.addr, opts(None)).unwrap();
    let err = copy(
        &RegistryRepo::new(c.clone(), "deep"),
        "chain",
        &RegistryRepo::new(cd.clone(), "deep"),
        "chain",
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("nested more than")),
        "{err:?}"
    );
    // Nothing was tagged at the destination.
    assert!(cd.get_manifest("deep", "chain").await.is_err());
}
