//! `berth cp`: an image or a whole index from one repository or registry to another.

use berth_client::CopyOptions;

use crate::args::CpArgs;
use crate::connect::registries;
use crate::exit::Failure;
use crate::output::print_report;
use crate::parse::{has_explicit_tag, parse_ref};
use crate::platforms::platforms;
use crate::progress;

/// Copies SRC to DEST, keeping digests (without a tag, DEST gets the source's tag).
pub async fn cp(a: CpArgs) -> Result<(), Failure> {
    let s = parse_ref(&a.src)?;
    let d = parse_ref(&a.dest)?;
    let dst = if has_explicit_tag(&a.dest) {
        d.clone()
    } else {
        berth_oci::Reference {
            tag: Some(s.tag.clone().unwrap_or_else(|| "latest".into())),
            digest: None,
            ..d.clone()
        }
    };
    let opts = CopyOptions {
        platforms: platforms(&a.platforms)?,
        concurrency: a.common.max_transfers.max(1),
        reporter: progress::reporter(),
        ..CopyOptions::default()
    };
    let hosts = [s.registry.as_str(), d.registry.as_str()];
    // One pool, so one client per host; a second only when the two sides use other
    // credentials (two accounts on one registry, say).
    let src_pool = registries(&hosts, &a.common, a.src_creds.as_deref())?;
    let report = if a.src_creds == a.dest_creds {
        src_pool.copy(&s, &dst, &opts).await
    } else {
        let dst_pool = registries(&hosts, &a.common, a.dest_creds.as_deref())?;
        berth_client::copy_between(&src_pool, &s, &dst_pool, &dst, &opts).await
    }
    .map_err(|e| Failure::client(&format!("copy {s} to {}", d.name()), e))?;
    print_report(&a.common, "Copied to", &d.name(), &report);
    Ok(())
}
