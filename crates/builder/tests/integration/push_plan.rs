//! `berth_builder::push` as a library, against CNCF Distribution 2.8 (`docker-registry`): typed
//! plans in, reports that match what the registry stores, typed errors out.

use std::collections::BTreeMap;
use std::io::Cursor;

use berth_builder::image::{ConfigEdits, ImageFormat, Platform};
use berth_builder::layer::TarOptions;
use berth_builder::pipeline::PipelineOptions;
use berth_builder::push::{
    self, BuildError, ConfigPlan, LayerPlan, LayerSource, NewImage, Quiet, Rebuild,
};
use berth_client::{Client, Error as ClientError};
use berth_oci::Reference;
use berth_test_support::client::{opts, push_image};
use berth_test_support::distribution::DockerRegistry;
use berth_test_support::image::plain_tar;
use serde_json::Value;

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

fn config_plan(epoch: &str) -> ConfigPlan {
    ConfigPlan {
        vars: BTreeMap::from([("SOURCE_DATE_EPOCH".to_owned(), epoch.to_owned())]),
        standard_labels: true,
        edits: ConfigEdits {
            env: vec!["MODE=test".into()],
            ..ConfigEdits::default()
        },
        ..ConfigPlan::default()
    }
}

fn folder_layer(root: &std::path::Path) -> LayerPlan {
    LayerPlan {
        source: LayerSource::Dir {
            root: root.to_owned(),
            tar: TarOptions {
                mtime_clamp: Some(1_700_000_000),
                ..TarOptions::default()
            },
        },
        pipeline: PipelineOptions::default(),
        attempts: 3,
    }
}

async fn config_of(c: &Client, repo: &str, reference: &str) -> Value {
    let m = c.get_manifest(repo, reference).await.unwrap();
    serde_json::from_slice(&c.get_config(repo, &m).await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_new_image_and_an_append_report_what_the_registry_stores() {
    let reg = DockerRegistry::start(false);
    let c = Client::new(&reg.addr, opts(None)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rootfs/etc")).unwrap();
    std::fs::write(dir.path().join("rootfs/etc/app.conf"), b"answer = 42\n").unwrap();

    let plan = NewImage {
        destination: reference(&format!("{}/lib/app:v1", reg.addr)),
        platform: Platform::parse("linux/arm64").unwrap(),
        format: ImageFormat::Oci,
        layer: folder_layer(&dir.path().join("rootfs")),
        config: config_plan("1700000000"),
    };
    let report = push::push_new_image(&c, &plan, &Quiet).await.unwrap();
    let stored = c.get_manifest("lib/app", "v1").await.unwrap();
    assert_eq!(report.digest, stored.digest);
    assert!(report.base_blobs.is_none());
    let layer = report.layer.clone().unwrap();
    let parsed = stored.parse().unwrap();
    assert_eq!(parsed.layers, vec![layer.descriptor.clone()]);
    // The upload took the pipeline's digest: the registry holds exactly those bytes.
    assert_eq!(
        c.head_blob("lib/app", &layer.descriptor.digest)
            .await
            .unwrap(),
        Some(layer.descriptor.size)
    );
    let config = config_of(&c, "lib/app", "v1").await;
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["rootfs"]["diff_ids"][0], layer.diff_id.to_string());
    assert_eq!(config["config"]["Env"][0], "MODE=test");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );

    // The same inputs give the same digests.
    let again = push::push_new_image(&c, &plan, &Quiet).await.unwrap();
    assert_eq!(again.digest, report.digest);

    // Append a plain tar from a one-shot stream onto it, in another repository: the base
    // layer is mounted, not copied, and the new layer goes on top.
    let tar = plain_tar(&[("srv/hello.txt", b"hello\n")]);
    let append = Rebuild {
        base: reference(&format!("{}/lib/app:v1", reg.addr)),
        destination: reference(&format!("{}/team/app:v2", reg.addr)),
        layer: Some(LayerPlan {
            source: LayerSource::stream(Cursor::new(tar)),
            pipeline: PipelineOptions::default(),
            attempts: 3,
        }),
        config: config_plan("1700000001"),
        platforms: vec![],
        format: None,
    };
    let r = push::rebuild(&c, &c, &append, &Quiet).await.unwrap();
    let counts = r.base_blobs.unwrap();
    assert_eq!((counts.mounted, counts.copied, counts.present), (1, 0, 0));
    let stored = c.get_manifest("team/app", "v2").await.unwrap();
    assert_eq!(r.digest, stored.digest);
    let layers = stored.parse().unwrap().layers;
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0], layer.descriptor);
    assert_eq!(layers[1], r.layer.unwrap().descriptor);
    let config = config_of(&c, "team/app", "v2").await;
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.base.digest"],
        report.digest.to_string()
    );
}

#[tokio::test]
async fn failures_are_typed_and_tag_nothing() {
    let reg = DockerRegistry::start(false);
    let c = Client::new(&reg.addr, opts(None)).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let missing = NewImage {
        destination: reference(&format!("{}/x:v1", reg.addr)),
        platform: Platform::host(),
        format: ImageFormat::Docker,
        layer: folder_layer(&dir.path().join("nope")),
        config: ConfigPlan::default(),
    };
    let e = push::push_new_image(&c, &missing, &Quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(e, BuildError::NotAFolder { ref path } if path.ends_with("nope")),
        "{e:?}"
    );

    let bad_epoch = NewImage {
        layer: folder_layer(dir.path()),
        config: config_plan("yesterday"),
        ..missing
    };
    let e = push::push_new_image(&c, &bad_epoch, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(e, BuildError::Variables(_)), "{e:?}");

    let mutate = |base: &str, platforms: Vec<Platform>| Rebuild {
        base: reference(&format!("{}/{base}", reg.addr)),
        destination: reference(&format!("{}/out:v1", reg.addr)),
        layer: None,
        config: ConfigPlan::default(),
        platforms,
        format: None,
    };
    let e = push::rebuild(&c, &c, &mutate("none:here", vec![]), &Quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Registry {
                during: "base image",
                source: ClientError::NotFound { .. }
            }
        ),
        "{e:?}"
    );

    push_image(&c, "single", "v1", &["linux/amd64"], 1, 100).await;
    let arm = vec![Platform::parse("linux/arm64").unwrap()];
    let e = push::rebuild(&c, &c, &mutate("single:v1", arm.clone()), &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(e, BuildError::NotMultiPlatform { .. }), "{e:?}");

    push_image(&c, "multi", "v1", &["linux/amd64", "linux/s390x"], 1, 100).await;
    let e = push::rebuild(&c, &c, &mutate("multi:v1", arm), &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(e, BuildError::NoMatchingPlatform { .. }), "{e:?}");

    // A merge file with a syntax error fails before any upload.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "config:\n  Env: [unclosed\n").unwrap();
    let plan = Rebuild {
        config: ConfigPlan {
            merge_files: vec![bad],
            ..ConfigPlan::default()
        },
        ..mutate("multi:v1", vec![])
    };
    let e = push::rebuild(&c, &c, &plan, &Quiet).await.unwrap_err();
    assert!(matches!(e, BuildError::Merge { .. }), "{e:?}");

    // None of it tagged anything.
    assert!(
        c.get_manifest("out", "v1")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(c.get_manifest("x", "v1").await.unwrap_err().is_not_found());
}
