//! Helpers over `berth-client` for the client's tests: test options and pushing random images.

use std::time::Duration;

use berth_client::{Client, ClientOptions, Credentials, Digest, Keychain, Manifest};
use berth_oci::media_type::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST};
use bytes::Bytes;

use crate::data::random_bytes;

/// Client options for tests: no Docker config, no environment credentials, quick retries.
pub fn opts(creds: Option<(&str, &str)>) -> ClientOptions {
    ClientOptions {
        keychain: creds
            .map(|(u, p)| Keychain::from(Credentials::basic(u, p)))
            .unwrap_or_default(),
        retry: berth_client::RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
        },
        ..ClientOptions::default()
    }
}

/// Pushes a random image for each platform (`os/arch`), with `layers` random layers of
/// `layer_size` bytes each plus one layer shared by all platforms, and an OCI index over them
/// tagged `tag` (or the single manifest when one platform is given). Returns the top manifest.
pub async fn push_image(
    client: &Client,
    repo: &str,
    tag: &str,
    platforms: &[&str],
    layers: usize,
    layer_size: usize,
) -> Manifest {
    let shared = Bytes::from(random_bytes(layer_size));
    let shared_digest = client.push_blob_bytes(repo, shared.clone()).await.unwrap();
    let mut entries = Vec::new();
    let mut last = None;
    for p in platforms {
        let (os, arch) = p.split_once('/').unwrap();
        let mut layer_descs = vec![serde_json::json!({
            "mediaType": OCI_LAYER_GZIP, "digest": shared_digest.to_string(), "size": shared.len()
        })];
        let mut diff_ids = vec![shared_digest.to_string()];
        for _ in 0..layers {
            let data = Bytes::from(random_bytes(layer_size));
            let len = data.len();
            let d = client.push_blob_bytes(repo, data).await.unwrap();
            diff_ids.push(d.to_string());
            layer_descs.push(serde_json::json!({
                "mediaType": OCI_LAYER_GZIP, "digest": d.to_string(), "size": len
            }));
        }
        let config = serde_json::json!({
            "architecture": arch, "os": os, "created": "2024-01-01T00:00:00Z",
            "config": {"Env": [format!("NONCE={}", rand::random::<u64>())]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        });
        let config_bytes = Bytes::from(serde_json::to_vec(&config).unwrap());
        let config_len = config_bytes.len();
        let config_digest = client.push_blob_bytes(repo, config_bytes).await.unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_len},
            "layers": layer_descs,
        });
        let m = Manifest::from_bytes(serde_json::to_vec(&manifest).unwrap(), None).unwrap();
        if platforms.len() == 1 {
            client.put_manifest(repo, tag, &m).await.unwrap();
            return m;
        }
        client
            .put_manifest(repo, &m.digest.to_string(), &m)
            .await
            .unwrap();
        entries.push(serde_json::json!({
            "mediaType": m.media_type, "digest": m.digest.to_string(), "size": m.size(),
            "platform": {"os": os, "architecture": arch}
        }));
        last = Some(m);
    }
    let _ = last;
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let m = Manifest::from_bytes(serde_json::to_vec(&index).unwrap(), None).unwrap();
    client.put_manifest(repo, tag, &m).await.unwrap();
    m
}

/// Every blob digest reachable from `m` (config and layers of each platform).
pub async fn all_blobs(client: &Client, repo: &str, m: &Manifest) -> Vec<Digest> {
    let parsed = m.parse().unwrap();
    let mut out = Vec::new();
    if m.is_index() {
        for c in parsed.manifests {
            let child = client
                .get_manifest(repo, &c.digest.to_string())
                .await
                .unwrap();
            out.extend(Box::pin(all_blobs(client, repo, &child)).await);
        }
    } else {
        out.extend(parsed.config.map(|c| c.digest));
        out.extend(parsed.layers.into_iter().map(|l| l.digest));
    }
    out.sort();
    out.dedup();
    out
}
