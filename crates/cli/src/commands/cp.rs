//! `berth cp`: an image or a whole index from one repository or registry to another.

use berth_client::{CopyOptions, RegistryRepo};

use crate::args::CpArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_report;
use crate::parse::{has_explicit_tag, parse_ref};
use crate::platforms::platforms;
use crate::progress;

/// Copies SRC to DEST, keeping digests (without a tag, DEST gets the source's tag).
pub async fn cp(a: CpArgs) -> Result<(), Failure> {
    let s = parse_ref(&a.src)?;
    let d = parse_ref(&a.dest)?;
    let dst_reference = if has_explicit_tag(&a.dest) {
        d.reference_str()
    } else {
        s.tag.clone().unwrap_or_else(|| "latest".into())
    };
    let sc = client(&s.registry, &a.common, a.src_creds.as_deref())?;
    let dc = if d.registry == s.registry && a.src_creds == a.dest_creds {
        sc.clone()
    } else {
        client(&d.registry, &a.common, a.dest_creds.as_deref())?
    };
    let opts = CopyOptions {
        platforms: platforms(&a.platforms)?,
        concurrency: a.common.max_transfers.max(1),
        reporter: progress::reporter(),
        ..CopyOptions::default()
    };
    let report = berth_client::copy(
        &RegistryRepo::new(sc, s.repository.clone()),
        &s.reference_str(),
        &RegistryRepo::new(dc, d.repository.clone()),
        &dst_reference,
        &opts,
    )
    .await
    .map_err(|e| Failure::client(&format!("copy {s} to {}", d.name()), e))?;
    print_report(&a.common, "Copied to", &d.name(), &report);
    Ok(())
}
