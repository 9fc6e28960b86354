//! `berth pull`: an image into an OCI image layout directory.

use berth_client::{CopyOptions, OciLayout, RegistryRepo};

use crate::args::PullArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_report;
use crate::parse::parse_ref;
use crate::platforms::platforms;
use crate::progress;

/// Downloads an image into a layout, under `--name` (default: the tag, or "latest").
pub async fn pull(a: PullArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let c = client(&r.registry, &a.common, None)?;
    let layout = OciLayout::create(&a.dir).await?;
    let name = a
        .name
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let opts = CopyOptions {
        platforms: platforms(&a.platforms)?,
        concurrency: a.common.max_transfers.max(1),
        reporter: progress::reporter(),
        ..CopyOptions::default()
    };
    let report = berth_client::copy(
        &RegistryRepo::new(c, r.repository.clone()),
        &r.reference_str(),
        &layout,
        &name,
        &opts,
    )
    .await
    .map_err(|e| Failure::client(&format!("pull {r}"), e))?;
    print_report(
        &a.common,
        "Pulled into",
        &format!("{}:{name}", a.dir.display()),
        &report,
    );
    Ok(())
}
