//! `berth push`: an image from an OCI image layout directory.

use berth_client::{CopyOptions, OciLayout, RegistryRepo};

use crate::args::PushArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_report;
use crate::parse::{has_explicit_tag, parse_ref};
use crate::progress;

/// Uploads the layout's image named `--name` (default: the reference's tag if the layout has
/// it, else its only image).
pub async fn push(a: PushArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let layout = OciLayout::open(&a.dir).await?;
    let names = layout.names().await?;
    let src_name = match a.name {
        Some(n) => n,
        None => match &r.tag {
            Some(t) if has_explicit_tag(&a.reference) && names.contains(t) => t.clone(),
            _ => String::new(),
        },
    };
    let c = client(&r.registry, &a.common, None)?;
    let opts = CopyOptions {
        concurrency: a.common.max_transfers.max(1),
        reporter: progress::reporter(),
        ..CopyOptions::default()
    };
    let report = berth_client::copy(
        &layout,
        &src_name,
        &RegistryRepo::new(c, r.repository.clone()),
        &r.reference_str(),
        &opts,
    )
    .await
    .map_err(|e| Failure::client(&format!("push {}", a.dir.display()), e))?;
    print_report(&a.common, "Pushed to", &r.name(), &report);
    Ok(())
}
