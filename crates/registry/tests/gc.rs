//! Garbage collection over the real folder backend.

mod common;
use common::*;

use berth_registry::QUARANTINE;

#[tokio::test]
async fn frees_what_nothing_references_and_keeps_every_manifest_and_its_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = registry(root);
    let (a, a_blobs) = image(&r, "team/app", "config a", &["shared", "layer a"], None).await;
    tag(&r, "team/app", "v1", &a).await;
    let (b, b_blobs) = image(&r, "team/app", "config b", &["shared", "layer b"], None).await;
    tag(&r, "team/app", "v2", &b).await;
    // Untagged, and in another repository: kept unless a policy says otherwise.
    let (c, c_blobs) = image(&r, "other", "config c", &["layer c"], None).await;
    let orphan = blob(&r, "team/app", b"never referenced").await;
    r.delete_manifest("team/app", &b.to_string()).await.unwrap();

    // Inside the grace window nothing goes.
    let report = r.collect_garbage(&opts(HOUR)).await.unwrap();
    assert!(report.blobs_deleted.is_empty(), "{report:?}");
    assert_eq!(
        report.kept_in_grace, 4,
        "b's config, layer and manifest, the orphan"
    );

    age_all(root, 2 * HOUR);
    let dry = r
        .collect_garbage(&GcOptions {
            dry_run: true,
            ..opts(HOUR)
        })
        .await
        .unwrap();
    let mut want = vec![
        b.clone(),
        b_blobs[0].clone(),
        b_blobs[2].clone(),
        orphan.clone(),
    ];
    want.sort();
    let listed: Vec<Digest> = dry.blobs_deleted.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(listed, want);
    assert!(
        want.iter().all(|d| stored(root, d)),
        "a dry run deletes nothing"
    );
    let size_b = r
        .get_manifest("team/app", &a.to_string())
        .await
        .unwrap()
        .bytes
        .len();
    assert!(dry.bytes_freed() > size_b as u64);

    let done = r.collect_garbage(&opts(HOUR)).await.unwrap();
    assert_eq!(done.blobs_deleted, dry.blobs_deleted);
    assert_eq!(done.manifests_kept, 2);
    assert!(want.iter().all(|d| !stored(root, d)));
    assert!(pulls(&r, "team/app", "v1", &a_blobs).await);
    assert!(pulls(&r, "other", &c.to_string(), &c_blobs).await);
    // The links to what went are gone too: the repository no longer claims the blob.
    assert!(matches!(
        r.stat_blob("team/app", &orphan).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    assert!(done.links_deleted >= 3, "{done:?}");
    // Nothing is left aside, and a second run finds nothing.
    assert!(
        !root.join(QUARANTINE).join("sha256").exists()
            || std::fs::read_dir(root.join(QUARANTINE).join("sha256"))
                .unwrap()
                .next()
                .is_none()
    );
    let again = r.collect_garbage(&opts(Duration::ZERO)).await.unwrap();
    assert!(again.blobs_deleted.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_blob_checked_with_head_or_referenced_by_a_push_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = registry(root);
    let headed = blob(&r, "r", b"headed").await;
    let mounted = blob(&r, "r", b"mounted").await;
    let idle = blob(&r, "r", b"idle").await;
    age_all(root, 2 * HOUR);
    // A client about to push a manifest checks its blobs, or mounts them elsewhere.
    r.head_blob("r", &headed).await.unwrap();
    r.mount_blob("elsewhere", "r", &mounted).await.unwrap();
    let report = r.collect_garbage(&opts(HOUR)).await.unwrap();
    let gone: Vec<Digest> = report
        .blobs_deleted
        .iter()
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(gone, vec![idle.clone()]);
    assert_eq!(report.kept_in_grace, 2);
    assert!(stored(root, &headed) && stored(root, &mounted) && !stored(root, &idle));
}

#[tokio::test]
async fn delete_untagged_keeps_indexes_children_and_the_referrers_of_what_stays() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = registry(root);
    let (a, a_blobs) = image(&r, "r", "config a", &["layer a"], None).await;
    tag(&r, "r", "v1", &a).await;
    let (sig, sig_blobs) = image(&r, "r", "sig of a", &["signature a"], Some(&a)).await;
    // A multi-platform index, tagged; its child is untagged.
    let (child, child_blobs) = image(&r, "r", "config child", &["layer child"], None).await;
    let child_size = r
        .get_manifest("r", &child.to_string())
        .await
        .unwrap()
        .bytes
        .len();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{child_size},"platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
    );
    r.put_manifest("r", "multi", Some(OCI_INDEX), Bytes::from(index))
        .await
        .unwrap();
    // An image whose tag moved on, and its signature: both go.
    let (old, old_blobs) = image(&r, "r", "config old", &["layer old"], None).await;
    let (old_sig, _) = image(&r, "r", "sig of old", &["signature old"], Some(&old)).await;
    // Untagged but recent: kept by the grace window.
    age_all(root, 2 * HOUR);
    let (fresh, _) = image(&r, "r", "config fresh", &["layer fresh"], None).await;

    let report = r
        .collect_garbage(&GcOptions {
            delete_untagged: true,
            ..opts(HOUR)
        })
        .await
        .unwrap();
    let mut want = vec![
        ("r".to_string(), old.clone()),
        ("r".to_string(), old_sig.clone()),
    ];
    want.sort();
    let mut got = report.manifests_deleted.clone();
    got.sort();
    assert_eq!(got, want);
    assert!(pulls(&r, "r", "v1", &a_blobs).await);
    assert!(pulls(&r, "r", &sig.to_string(), &sig_blobs).await);
    assert!(pulls(&r, "r", &child.to_string(), &child_blobs).await);
    assert!(pulls(&r, "r", &fresh.to_string(), &[]).await);
    assert!(r.get_manifest("r", &old.to_string()).await.is_err());
    assert!(old_blobs.iter().all(|d| !stored(root, d)));
    // The signature is still listed as a referrer of what it signs.
    let page = r.referrers("r", &a, None, None).await.unwrap();
    let listed = serde_json::to_string(&page.descriptors).unwrap();
    assert!(listed.contains(&sig.to_string()), "{listed}");
}

#[tokio::test]
async fn blobs_a_killed_run_moved_aside_are_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = registry(root);
    let (a, a_blobs) = image(&r, "r", "config a", &["layer a"], None).await;
    tag(&r, "r", "v1", &a).await;
    // As a run killed between its move and its second look leaves them.
    for d in &a_blobs {
        let to = root
            .join(QUARANTINE)
            .join(d.algorithm().to_string())
            .join(d.hex());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(root.join(berth_registry::paths::blob_data(d)), to).unwrap();
    }
    assert!(!pulls(&r, "r", "v1", &a_blobs).await);
    assert_eq!(r.gc_recover().await.unwrap(), a_blobs.len());
    assert!(pulls(&r, "r", "v1", &a_blobs).await);
}
