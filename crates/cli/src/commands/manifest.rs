//! `berth manifest`, `berth config` and `berth digest`: an image's documents.

use std::io::Write as _;

use berth_client::Platform;
use serde_json::json;

use crate::args::{ConfigArgs, DigestArgs, ManifestArgs};
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::parse_ref;
use crate::platforms::fetch_for_platform;

/// Prints a manifest or index, byte for byte.
pub async fn manifest(a: ManifestArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let c = client(&r.registry, &a.common, None)?;
    let m = fetch_for_platform(&c, &r, a.platform.as_deref()).await?;
    if a.common.json {
        let body: serde_json::Value =
            serde_json::from_slice(&m.bytes).unwrap_or(serde_json::Value::Null);
        print_json(
            &json!({"digest": m.digest, "mediaType": m.media_type, "size": m.size(), "manifest": body}),
        );
    } else {
        // Exactly the stored bytes, so that `berth manifest REF | sha256sum` is the digest.
        write_exact(&m.bytes)?;
    }
    Ok(())
}

/// Prints an image's config blob byte for byte (of linux/amd64 for an index, unless `--platform`).
pub async fn config(a: ConfigArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let c = client(&r.registry, &a.common, None)?;
    let mut m = fetch_for_platform(&c, &r, a.platform.as_deref()).await?;
    if m.is_index() {
        let p: Platform = "linux/amd64".parse().expect("valid platform");
        m = c
            .resolve_platform(&r.repository, m, &p)
            .await
            .map_err(|e| Failure::client("pick one with --platform", e))?;
    }
    let config = c.get_config(&r.repository, &m).await?;
    write_exact(&config)
}

/// Writes a document to standard output byte for byte (no newline added).
fn write_exact(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A reader that stopped early (`| head`) is not a failure of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::other(
            anyhow::Error::new(e).context("writing to standard output failed"),
        )),
    }
}

/// Prints the digest a reference resolves to (HEAD, no download).
pub async fn digest(a: DigestArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let c = client(&r.registry, &a.common, None)?;
    let info = c.head_manifest(&r.repository, &r.reference_str()).await?;
    if a.common.json {
        print_json(
            &json!({"digest": info.digest, "mediaType": info.media_type, "size": info.size}),
        );
    } else {
        println!("{}", info.digest);
    }
    Ok(())
}
