//! `berth rm` and `berth rm-repo`.

use berth_client::Digest;
use serde_json::json;

use crate::args::{RmArgs, RmRepoArgs};
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::parse_ref;

/// Deletes a tag (only that tag, where the registry allows it) or a manifest by digest.
pub async fn rm(a: RmArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let c = client(&r.registry, &a.common, None)?;
    match &r.digest {
        Some(d) => c.delete_manifest(&r.repository, d).await?,
        None => {
            let t = r.tag.clone().unwrap_or_else(|| "latest".into());
            c.delete_tag(&r.repository, &t).await?;
        }
    }
    if a.common.json {
        print_json(&json!({"deleted": r.to_string()}));
    } else {
        println!("Deleted {r}");
    }
    Ok(())
}

/// Deletes every manifest a tag of the repository points to (only with `--yes`).
pub async fn rm_repo(a: RmRepoArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.repo)?;
    if !a.yes {
        return Err(Failure::usage(format!(
            "refusing to delete every manifest of {} without --yes",
            r.name()
        )));
    }
    let c = client(&r.registry, &a.common, None)?;
    let tags = c.tags(&r.repository, None).await?;
    let pairs = c.tag_digests(&r.repository, &tags).await?;
    let mut digests: Vec<Digest> = pairs.into_iter().map(|(_, d)| d).collect();
    digests.sort();
    digests.dedup();
    for d in &digests {
        match c.delete_manifest(&r.repository, d).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(Failure::client(&format!("deleting {}@{d}", r.name()), e));
            }
        }
    }
    if a.common.json {
        print_json(&json!({"repository": r.name(), "deletedManifests": digests, "tags": tags}));
    } else {
        println!(
            "Deleted {} manifests ({} tags) from {}",
            digests.len(),
            tags.len(),
            r.name()
        );
    }
    Ok(())
}
