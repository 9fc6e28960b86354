//! `berth referrers`.

use serde_json::json;

use crate::args::ReferrersArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::parse_ref;

/// Lists the artifacts that refer to an image (referrers API, or the tag schema fallback).
pub async fn referrers(a: ReferrersArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let c = client(&r.registry, &a.common, None)?;
    let digest = match &r.digest {
        Some(d) => d.clone(),
        None => c.digest(&r.repository, &r.reference_str()).await?,
    };
    let list = c
        .referrers(&r.repository, &digest, a.artifact_type.as_deref())
        .await?;
    if a.common.json {
        let v: Vec<_> = list
            .iter()
            .map(|d| json!({"digest": d.digest, "mediaType": d.media_type, "size": d.size, "artifactType": d.artifact_type}))
            .collect();
        print_json(&json!({"subject": digest, "referrers": v}));
    } else {
        for d in list {
            println!("{}\t{}", d.digest, d.artifact_type.unwrap_or_default());
        }
    }
    Ok(())
}
