//! Platform flags: which platforms of an index to copy, and one platform's manifest picked
//! from an index.

use berth_client::{Client, Manifest, Platform, Platforms};
use berth_oci::Reference;

use crate::args::PlatformArgs;
use crate::exit::Failure;

/// The platforms `--platform` (repeated or comma-separated) selects; none means all.
pub fn platforms(args: &PlatformArgs) -> Result<Platforms, Failure> {
    let list: Vec<Platform> = args
        .platform
        .iter()
        .flat_map(|p| p.split(','))
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|e| Failure::usage(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(match list.len() {
        0 => Platforms::All,
        1 => Platforms::One(list.into_iter().next().expect("one")),
        _ => Platforms::Some(list),
    })
}

/// The manifest `r` names, or with `platform` that platform's manifest of the index.
pub async fn fetch_for_platform(
    c: &Client,
    r: &Reference,
    platform: Option<&str>,
) -> Result<Manifest, Failure> {
    let m = c.get_manifest(&r.repository, &r.reference_str()).await?;
    match platform {
        Some(p) => {
            let p: Platform = p
                .parse()
                .map_err(|e: berth_oci::PlatformError| Failure::usage(e.to_string()))?;
            Ok(c.resolve_platform(&r.repository, m, &p).await?)
        }
        None => Ok(m),
    }
}
