//! Lifecycle policies over the real folder backend (and the embedded index for quotas):
//! immutable tags, quotas, and retention run with garbage collection.

mod common;
use common::*;

use berth_registry::paths;
use berth_registry::{Index, IndexConfig, Policies};

const DAY: Duration = Duration::from_secs(86400);

fn with_policies(root: &Path, yaml: &str) -> Registry {
    let policies: Policies = serde_saphyr::from_str(yaml).unwrap();
    Registry::new(
        Arc::new(FolderStorage::new(root).unwrap()),
        RegistryConfig {
            delete_enabled: true,
            policies: Arc::new(policies),
            ..Default::default()
        },
    )
}

/// Makes one stored key look written `age` ago.
fn set_age(root: &Path, key: &str, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(root.join(key))
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

fn denied(e: RegistryError) -> String {
    assert!(matches!(e, RegistryError::Denied(_)), "{e:?}");
    e.to_string()
}

#[tokio::test]
async fn immutable_tags_cannot_move_or_go() {
    let dir = tempfile::tempdir().unwrap();
    let r = with_policies(
        dir.path(),
        "immutable:\n  - repositories: prod/*\n    tags: ['v*']\n",
    );
    let (a, _) = image(&r, "prod/app", "config a", &["a"], None).await;
    let (b, _) = image(&r, "prod/app", "config b", &["b"], None).await;
    tag(&r, "prod/app", "v1", &a).await;
    // The same manifest again is no move.
    tag(&r, "prod/app", "v1", &a).await;
    let m = r.get_manifest("prod/app", &b.to_string()).await.unwrap();
    let e = r
        .put_manifest("prod/app", "v1", Some(&m.media_type), m.bytes.clone())
        .await
        .unwrap_err();
    let msg = denied(e);
    assert!(
        msg.contains("immutable") && msg.contains(&a.to_string()),
        "{msg}"
    );
    assert_eq!(r.resolve("prod/app", "v1").await.unwrap(), a);
    let e = r
        .put_manifest_tagged(
            "prod/app",
            &b.to_string(),
            Some(&m.media_type),
            m.bytes.clone(),
            &["v1".into()],
        )
        .await
        .unwrap_err();
    denied(e);
    denied(r.delete_manifest("prod/app", "v1").await.unwrap_err());
    denied(
        r.delete_manifest("prod/app", &a.to_string())
            .await
            .unwrap_err(),
    );
    assert_eq!(r.resolve("prod/app", "v1").await.unwrap(), a);
    // Tags the rule does not cover, and repositories it does not cover, move freely.
    tag(&r, "prod/app", "latest", &a).await;
    tag(&r, "prod/app", "latest", &b).await;
    r.delete_manifest("prod/app", "latest").await.unwrap();
    let (c, _) = image(&r, "prod/app/nested", "config c", &["c"], None).await;
    let (d, _) = image(&r, "prod/app/nested", "config d", &["d"], None).await;
    tag(&r, "prod/app/nested", "v1", &c).await;
    tag(&r, "prod/app/nested", "v1", &d).await;
    // A new immutable tag can be created.
    tag(&r, "prod/app", "v2", &b).await;
    assert_eq!(r.resolve("prod/app", "v2").await.unwrap(), b);
}

#[tokio::test]
async fn a_quota_refuses_what_would_cross_it_with_the_figure_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let index = Index::open(&IndexConfig::Embedded {
        path: root.join("index.db"),
    })
    .await
    .unwrap();
    let r = with_policies(root, "quotas:\n  - repositories: team/*\n    bytes: 2kB\n")
        .with_index(index)
        .await
        .unwrap();
    r.reconcile_index(false).await.unwrap();
    let layer = "x".repeat(600);
    let (a, _) = image(&r, "team/app", "config a", &[&layer], None).await;
    tag(&r, "team/app", "v1", &a).await;
    let used = r.repository_size("team/app").await.unwrap().unwrap();
    assert!(used > 600 && used < 2000, "{used}");

    // A blob that alone crosses the quota is refused before its bytes are stored.
    let big = vec![7u8; 1500];
    let d = Digest::sha256_of(&big);
    let e = r
        .put_blob(
            "team/app",
            &d.to_string(),
            Box::pin(futures::stream::iter([Ok(Bytes::from(big.clone()))])),
            Some(big.len() as u64),
        )
        .await
        .unwrap_err();
    let msg = denied(e);
    assert!(
        msg.contains("2000") && msg.contains(&used.to_string()),
        "{msg}"
    );
    assert!(!root.join(paths::blob_data(&d)).exists());

    // Blobs that fit one by one, in a manifest that together crosses it: the manifest is
    // refused, and nothing of it becomes visible.
    let l2 = "y".repeat(500);
    let l3 = "z".repeat(500);
    let b2 = blob(&r, "team/app", l2.as_bytes()).await;
    let b3 = blob(&r, "team/app", l3.as_bytes()).await;
    let cfg = blob(&r, "team/app", b"config b").await;
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":8}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{b2}","size":500}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{b3}","size":500}}]}}"#
    );
    let e = r
        .put_manifest("team/app", "v2", Some(OCI_MANIFEST), Bytes::from(m.clone()))
        .await
        .unwrap_err();
    let msg = denied(e);
    assert!(msg.contains("quota of 2000 bytes"), "{msg}");
    assert!(r.resolve("team/app", "v2").await.is_err());
    assert_eq!(r.repository_size("team/app").await.unwrap().unwrap(), used);

    // A manifest reusing what the repository holds adds only its own bytes: accepted.
    let again = r.get_manifest("team/app", &a.to_string()).await.unwrap();
    r.put_manifest("team/app", "v1-again", Some(OCI_MANIFEST), again.bytes)
        .await
        .unwrap();
    // Other repositories are not limited.
    let (o, _) = image(&r, "elsewhere", "config o", &[&"w".repeat(3000)], None).await;
    tag(&r, "elsewhere", "v1", &o).await;

    // Exactly at the quota (a manifest's length is the same for any 4-digit layer size, so
    // one pushed elsewhere tells how long the layer may be), a new upload is refused at once.
    let (probe, _) = image(&r, "elsewhere", "c", &[&"p".repeat(1000)], None).await;
    let m_len = r
        .get_manifest("elsewhere", &probe.to_string())
        .await
        .unwrap()
        .bytes
        .len();
    let (f, _) = image(&r, "team/full", "c", &[&"q".repeat(2000 - 1 - m_len)], None).await;
    tag(&r, "team/full", "v1", &f).await;
    assert_eq!(r.repository_size("team/full").await.unwrap(), Some(2000));
    let msg = denied(r.start_upload("team/full").await.unwrap_err());
    assert!(msg.contains("holds 2000 bytes"), "{msg}");
}

#[tokio::test]
async fn retention_deletes_the_tags_it_judges_and_the_images_they_leave() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = with_policies(
        root,
        "retention:\n  - repositories: ci/**\n    keep:\n      recent: 2\n      tags: [release-*]\n    untagged: 1d\n",
    );
    let repo = "ci/app";
    let mut images = Vec::new();
    for (i, t) in ["t1", "t2", "t3", "t4", "release-1"].iter().enumerate() {
        let (d, blobs) = image(&r, repo, &format!("config {t}"), &["shared", t], None).await;
        tag(&r, repo, t, &d).await;
        images.push((t.to_string(), d, blobs, i));
    }
    let (sig, sig_blobs) =
        image(&r, repo, "sig of t1", &["signature t1"], Some(&images[0].1)).await;
    let (old_untagged, old_blobs) = image(&r, repo, "old untagged", &["old u"], None).await;
    let (new_untagged, new_blobs) = image(&r, repo, "new untagged", &["new u"], None).await;
    // An untouched repository keeps everything.
    let (k, _) = image(&r, "keep/app", "config k", &["k"], None).await;
    tag(&r, "keep/app", "old", &k).await;
    age_all(root, 10 * DAY);
    // Pushed t1 oldest … t4 newest; release-1 oldest of all.
    for (t, _, _, i) in &images {
        let age = if t == "release-1" {
            9 * DAY
        } else {
            DAY * (5 - *i as u32)
        };
        set_age(root, &paths::tag_current(repo, t), age);
    }
    set_age(
        root,
        &paths::revision_link(repo, &new_untagged),
        Duration::from_secs(3600),
    );

    let mut o = opts(Duration::from_secs(60));
    o.policies = true;
    o.dry_run = true;
    let dry = r.collect_garbage(&o).await.unwrap();
    let judged: Vec<&str> = dry.tags_deleted.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(judged, vec!["t1", "t2"], "{:?}", dry.tags_deleted);
    assert!(
        dry.tags_deleted[0].reason.contains("retention[0]"),
        "{:?}",
        dry.tags_deleted[0]
    );
    let mut would: Vec<&Digest> = dry.manifests_deleted.iter().map(|(_, d)| d).collect();
    would.sort();
    let mut expect = vec![&images[0].1, &images[1].1, &sig, &old_untagged];
    expect.sort();
    assert_eq!(would, expect);
    // A dry run changes nothing.
    assert_eq!(r.resolve(repo, "t1").await.unwrap(), images[0].1);
    assert!(pulls(&r, repo, &sig.to_string(), &sig_blobs).await);

    o.dry_run = false;
    let report = r.collect_garbage(&o).await.unwrap();
    assert_eq!(report.tags_deleted.len(), 2);
    assert_eq!(report.manifests_deleted.len(), 4);
    assert_eq!(
        report.blobs_deleted.len(),
        dry.blobs_deleted.len(),
        "the dry run said what would go"
    );
    for (t, d, blobs, _) in &images[..2] {
        assert!(r.resolve(repo, t).await.is_err(), "{t} deleted");
        assert!(!stored(root, d));
        // Its own layer goes; the shared one stays.
        assert!(!stored(root, &blobs[2]));
        assert!(stored(root, &blobs[1]));
    }
    assert!(
        !stored(root, &sig),
        "the referrer of a deleted image goes with it"
    );
    assert!(!stored(root, &old_blobs[1]));
    for (t, _, blobs, _) in &images[2..] {
        assert!(pulls(&r, repo, t, blobs).await, "{t} kept");
    }
    assert!(pulls(&r, repo, &new_untagged.to_string(), &new_blobs).await);
    assert!(pulls(&r, "keep/app", "old", &[]).await);
}

#[tokio::test]
async fn an_expiry_annotation_ends_a_tag_and_immutable_tags_never_go() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = with_policies(
        root,
        "immutable:\n  - repositories: pr/app\n    tags: [frozen]\nretention:\n  - repositories: '**'\n",
    );
    let repo = "pr/app";
    let cfg = blob(&r, repo, b"{}").await;
    let mk = |expires: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":2}},"layers":[],"annotations":{{"quay.expires-after":"{expires}"}}}}"#
        )
    };
    for (t, e) in [
        ("pr-1", "1h"),
        ("pr-2", "3d"),
        ("frozen", "1h"),
        ("never", "never"),
    ] {
        r.put_manifest(repo, t, Some(OCI_MANIFEST), Bytes::from(mk(e)))
            .await
            .unwrap();
    }
    age_all(root, 2 * DAY);
    let mut o = opts(Duration::from_secs(60));
    o.policies = true;
    let report = r.collect_garbage(&o).await.unwrap();
    let gone: Vec<&str> = report.tags_deleted.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(gone, vec!["pr-1"], "{:?}", report.tags_deleted);
    assert!(report.tags_deleted[0].reason.contains("expired"));
    for t in ["pr-2", "frozen", "never"] {
        assert!(r.resolve(repo, t).await.is_ok(), "{t} kept");
    }
}
