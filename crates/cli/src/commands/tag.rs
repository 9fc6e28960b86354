//! `berth tag`: a remote image under another tag, within one registry.

use berth_client::{CopyOptions, RegistryRepo};
use berth_oci::{Reference, validate_tag};
use serde_json::json;

use crate::args::TagArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::{print_json, print_report};
use crate::parse::parse_ref;
use crate::progress;

/// Tags SRC as NEWTAG (same repository) or as DEST (same registry).
pub async fn tag(a: TagArgs) -> Result<(), Failure> {
    let (src, dest, common) = (&a.src, &a.dest, &a.common);
    let s = parse_ref(src)?;
    let d = if !dest.contains('/')
        && !dest.contains(':')
        && !dest.contains('@')
        && validate_tag(dest).is_ok()
    {
        Reference::with_tag(&s.registry, &s.repository, dest)
    } else {
        parse_ref(dest)?
    };
    if d.registry != s.registry {
        return Err(Failure::usage(format!(
            "berth tag works within one registry ({} vs {}); use berth cp to copy between registries",
            s.registry, d.registry
        )));
    }
    let new_tag = d
        .tag
        .clone()
        .filter(|_| d.digest.is_none())
        .ok_or_else(|| Failure::usage("the destination needs a tag, not a digest"))?;
    let c = client(&s.registry, common, None)?;
    if d.repository == s.repository {
        // Manifest-only: the same bytes and media type, under another tag.
        let m = c.get_manifest(&s.repository, &s.reference_str()).await?;
        c.put_manifest(&d.repository, &new_tag, &m).await?;
        if common.json {
            print_json(
                &json!({"tagged": d.to_string(), "digest": m.digest, "mediaType": m.media_type}),
            );
        } else {
            println!("Tagged {d}@{}", m.digest);
        }
        return Ok(());
    }
    // Another repository of the same registry: layers arrive by cross-repository mount.
    let report = berth_client::copy(
        &RegistryRepo::new(c.clone(), s.repository.clone()),
        &s.reference_str(),
        &RegistryRepo::new(c, d.repository.clone()),
        &new_tag,
        &CopyOptions {
            reporter: progress::reporter(),
            ..CopyOptions::default()
        },
    )
    .await?;
    print_report(common, "Tagged", &d.to_string(), &report);
    Ok(())
}
