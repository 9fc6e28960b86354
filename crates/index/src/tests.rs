//! The index on its embedded backend (the PostgreSQL backend runs the registry's end-to-end
//! suites, started by the tests).

use std::time::{Duration, SystemTime};

use berth_oci::Digest;

use crate::*;

async fn open(dir: &tempfile::TempDir) -> Index {
    Index::open(&IndexConfig::Embedded {
        path: dir.path().join("sub/index.db"),
    })
    .await
    .unwrap()
}

fn manifest(n: u8, subject: Option<&Digest>) -> ManifestRecord {
    let digest = Digest::sha256_of(&[n]);
    ManifestRecord {
        digest: digest.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 100 + u64::from(n),
        artifact_type: subject.map(|_| "application/example".into()),
        subject: subject.cloned(),
        referrer_entry: subject.map(|_| format!(r#"{{"digest":"{digest}"}}"#)),
        references: vec![
            ManifestReference {
                digest: Digest::sha256_of(b"config"),
                kind: ReferenceKind::Blob,
                size: 10,
            },
            ManifestReference {
                digest: Digest::sha256_of(&[n, n]),
                kind: ReferenceKind::Blob,
                size: 1000,
            },
        ],
        created_at: SystemTime::now(),
    }
}

fn tags(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn listings_pages_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let ix = open(&dir).await;
    assert!(!ix.is_complete().await.unwrap());
    for repo in ["b/x", "a", "B", "a/b"] {
        ix.put_manifest(
            repo,
            &manifest(1, None),
            &tags(&["v1", "latest", "V0"]),
            SystemTime::now(),
        )
        .await
        .unwrap();
    }
    // Bytewise order, as the spec's lexical order: uppercase first.
    assert_eq!(
        ix.catalog(None, None).await.unwrap(),
        (tags(&["B", "a", "a/b", "b/x"]), false)
    );
    assert_eq!(
        ix.catalog(Some(2), None).await.unwrap(),
        (tags(&["B", "a"]), true)
    );
    assert_eq!(
        ix.catalog(Some(2), Some("a")).await.unwrap(),
        (tags(&["a/b", "b/x"]), false)
    );
    assert_eq!(
        ix.tags("a", None, None).await.unwrap(),
        Some((tags(&["V0", "latest", "v1"]), false))
    );
    assert_eq!(
        ix.tags("a", Some(1), Some("V0")).await.unwrap(),
        Some((tags(&["latest"]), true))
    );
    assert_eq!(ix.tags("nope", None, None).await.unwrap(), None);

    ix.delete_tag("a", "latest").await.unwrap();
    assert_eq!(
        ix.tags("a", None, None).await.unwrap(),
        Some((tags(&["V0", "v1"]), false))
    );
    ix.delete_manifest("a", &manifest(1, None).digest)
        .await
        .unwrap();
    assert_eq!(
        ix.tags("a", None, None).await.unwrap(),
        Some((vec![], false))
    );
    assert_eq!(
        ix.manifest_info("a", &manifest(1, None).digest)
            .await
            .unwrap(),
        None
    );
    // A new push revives the deleted rows.
    ix.put_manifest("a", &manifest(1, None), &tags(&["v1"]), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        ix.tags("a", None, None).await.unwrap(),
        Some((tags(&["v1"]), false))
    );
}

#[tokio::test]
async fn referrers_sizes_and_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let ix = open(&dir).await;
    let base = manifest(1, None);
    ix.put_manifest("r", &base, &tags(&["v1"]), SystemTime::now())
        .await
        .unwrap();
    let mut sigs: Vec<ManifestRecord> = (2..6).map(|n| manifest(n, Some(&base.digest))).collect();
    sigs[0].artifact_type = Some("application/other".into());
    for s in &sigs {
        ix.put_manifest("r", s, &[], SystemTime::now())
            .await
            .unwrap();
    }
    let (all, more) = ix
        .referrers("r", &base.digest, None, None, 10)
        .await
        .unwrap();
    assert!(!more);
    let mut want: Vec<Digest> = sigs.iter().map(|s| s.digest.clone()).collect();
    want.sort_by_key(|d| d.to_string());
    assert_eq!(all.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), want);
    let (page, more) = ix
        .referrers("r", &base.digest, None, None, 2)
        .await
        .unwrap();
    assert!(more);
    let (rest, _) = ix
        .referrers("r", &base.digest, None, Some(&page[1].0), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    let (other, _) = ix
        .referrers("r", &base.digest, Some("application/other"), None, 10)
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].0, sigs[0].digest);

    // 5 manifests (101..105 bytes), the shared config once, 5 distinct layers.
    assert_eq!(
        ix.repository_size("r").await.unwrap(),
        Some(101 + 102 + 103 + 104 + 105 + 10 + 5 * 1000)
    );
    assert_eq!(ix.repository_size("nope").await.unwrap(), None);

    let rec = PullRecorder::spawn(ix.clone(), Duration::from_secs(3600));
    assert_eq!(
        ix.manifest_info("r", &base.digest)
            .await
            .unwrap()
            .unwrap()
            .last_pulled_at,
        None
    );
    rec.record("r", &base.digest);
    rec.record("r", &Digest::sha256_of(b"unknown"));
    rec.flush(&ix).await;
    let pulled = ix
        .manifest_info("r", &base.digest)
        .await
        .unwrap()
        .unwrap()
        .last_pulled_at;
    assert!(pulled.is_some_and(|t| t <= SystemTime::now()));
}

#[tokio::test]
async fn reconcile_fixes_differences_but_not_recent_live_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ix = open(&dir).await;
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    let mut old = manifest(1, None);
    old.created_at = long_ago;
    let new = manifest(2, None);
    let snapshot = RepositorySnapshot {
        repository: "r".into(),
        manifests: vec![old.clone(), new.clone()],
        tags: vec![
            TagRecord {
                tag: "a".into(),
                digest: old.digest.clone(),
                pushed_at: long_ago,
            },
            TagRecord {
                tag: "b".into(),
                digest: new.digest.clone(),
                pushed_at: long_ago,
            },
        ],
    };
    let started = SystemTime::now();
    let diff = ix
        .reconcile_repository(&snapshot, started, true)
        .await
        .unwrap();
    assert!(diff.repository_missing);
    assert_eq!(diff.tags_missing, tags(&["a", "b"]));
    assert_eq!(
        ix.catalog(None, None).await.unwrap().0,
        Vec::<String>::new(),
        "--check changes nothing"
    );
    ix.reconcile_repository(&snapshot, started, false)
        .await
        .unwrap();
    assert_eq!(
        ix.tags("r", None, None).await.unwrap(),
        Some((tags(&["a", "b"]), false))
    );
    assert!(
        ix.reconcile_repository(&snapshot, started, true)
            .await
            .unwrap()
            .is_empty()
    );

    // A live push of tag c after the walk read storage: the reconcile leaves it.
    ix.put_manifest("r", &new, &tags(&["c"]), SystemTime::now())
        .await
        .unwrap();
    let diff = ix
        .reconcile_repository(&snapshot, started, false)
        .await
        .unwrap();
    assert_eq!(diff.tags_extra, tags(&["c"]));
    assert_eq!(
        ix.tags("r", None, None).await.unwrap(),
        Some((tags(&["a", "b", "c"]), false))
    );
    // A live delete of tag a: not revived by a reconcile whose walk still saw it.
    ix.delete_tag("r", "a").await.unwrap();
    ix.reconcile_repository(&snapshot, started, false)
        .await
        .unwrap();
    assert_eq!(
        ix.tags("r", None, None).await.unwrap(),
        Some((tags(&["b", "c"]), false))
    );
    // A later reconcile (well after those writes) brings the index to what storage holds.
    let later = SystemTime::now() + RECONCILE_GRACE + Duration::from_secs(1);
    ix.reconcile_repository(&snapshot, later, false)
        .await
        .unwrap();
    assert_eq!(
        ix.tags("r", None, None).await.unwrap(),
        Some((tags(&["a", "b"]), false))
    );
    assert_eq!(
        ix.manifest_info("r", &old.digest)
            .await
            .unwrap()
            .unwrap()
            .created_at,
        crate::records::from_millis(crate::records::millis(long_ago))
    );

    // Repositories storage no longer holds are forgotten, recent ones kept.
    ix.add_repository("fresh").await.unwrap();
    let stored = std::collections::BTreeSet::new();
    assert_eq!(
        ix.reconcile_repositories(&stored, started, true)
            .await
            .unwrap(),
        tags(&["fresh", "r"])
    );
    ix.reconcile_repositories(&stored, later, false)
        .await
        .unwrap();
    assert_eq!(
        ix.catalog(None, None).await.unwrap().0,
        Vec::<String>::new()
    );
    ix.mark_complete().await.unwrap();
    assert!(ix.is_complete().await.unwrap());
}

#[tokio::test]
async fn a_foreign_or_damaged_file_is_refused_and_reopening_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let e = Index::open(&IndexConfig::Embedded { path: path.clone() })
        .await
        .unwrap_err();
    assert!(matches!(e, IndexError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("junk.db"), "{e}");

    let other = dir.path().join("other.db");
    {
        let ix = Index::open(&IndexConfig::Embedded {
            path: other.clone(),
        })
        .await
        .unwrap();
        sqlx::query("DROP TABLE _sqlx_migrations")
            .execute(&ix.pool)
            .await
            .unwrap();
        ix.close().await;
    }
    let e = Index::open(&IndexConfig::Embedded { path: other })
        .await
        .unwrap_err();
    assert!(matches!(e, IndexError::Foreign { .. }), "{e:?}");

    let ix = open(&dir).await;
    ix.put_manifest("r", &manifest(1, None), &tags(&["v1"]), SystemTime::now())
        .await
        .unwrap();
    ix.close().await;
    let ix = open(&dir).await;
    assert_eq!(
        ix.tags("r", None, None).await.unwrap(),
        Some((tags(&["v1"]), false))
    );

    let e = Index::open(&IndexConfig::Postgres {
        dsn: "mysql://x".into(),
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("database.dsn"), "{e}");
}

#[tokio::test]
async fn a_push_names_the_tags_another_writer_changed_while_it_wrote_storage() {
    let dir = tempfile::tempdir().unwrap();
    let ix = open(&dir).await;
    let (a, b) = (manifest(1, None), manifest(2, None));
    // A new tag, and one moved by a writer that finished long before this push began.
    let contended = ix
        .put_manifest("r", &a, &tags(&["new", "old"]), SystemTime::now())
        .await
        .unwrap();
    assert!(contended.is_empty(), "{contended:?}");
    let later = SystemTime::now() + CLOCK_SKEW + Duration::from_secs(1);
    assert!(
        ix.put_manifest("r", &b, &tags(&["old"]), later)
            .await
            .unwrap()
            .is_empty()
    );
    // Another writer moved "hot" after this push began writing storage: named.
    let began = SystemTime::now();
    ix.put_manifest("r", &a, &tags(&["hot", "same"]), began)
        .await
        .unwrap();
    let contended = ix
        .put_manifest("r", &b, &tags(&["hot"]), began)
        .await
        .unwrap();
    assert_eq!(contended, tags(&["hot"]));
    // The same manifest written twice is no contest; a recent delete is.
    assert!(
        ix.put_manifest("r", &a, &tags(&["same"]), began)
            .await
            .unwrap()
            .is_empty()
    );
    ix.delete_tag("r", "same").await.unwrap();
    let contended = ix
        .put_manifest("r", &a, &tags(&["same"]), began)
        .await
        .unwrap();
    assert_eq!(contended, tags(&["same"]));
    // Every write landed: the tags point where the last push said.
    let listed = ix.tag_records("r").await.unwrap();
    let digest_of = |t: &str| listed.iter().find(|r| r.tag == t).map(|r| r.digest.clone());
    assert_eq!(digest_of("hot"), Some(b.digest.clone()));
    assert_eq!(digest_of("old"), Some(b.digest.clone()));
    assert_eq!(digest_of("same"), Some(a.digest.clone()));
}
