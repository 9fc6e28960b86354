//! `berth size`: an image's config plus its layers, per platform for an index.

use berth_client::{Manifest, Platform};
use serde_json::json;

use crate::args::SizeArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::parse_ref;
use crate::platforms::fetch_for_platform;

/// Prints the size of an image, or of each image of an index.
pub async fn size(a: SizeArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let c = client(&r.registry, &a.common, None)?;
    let m = fetch_for_platform(&c, &r, a.platform.as_deref()).await?;
    let mut rows = Vec::new();
    if m.is_index() {
        let parsed = m.parse()?;
        for entry in parsed.manifests {
            let child = c
                .get_manifest(&r.repository, &entry.digest.to_string())
                .await?;
            if child.is_index() {
                continue;
            }
            let plat = Platform::of(entry.platform.as_ref())
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into());
            rows.push((plat, child.digest.clone(), image_size(&child)?));
        }
    } else {
        rows.push((
            a.platform.clone().unwrap_or_default(),
            m.digest.clone(),
            image_size(&m)?,
        ));
    }
    if a.common.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(p, d, (cfg, layers, n))| {
                json!({"platform": p, "digest": d, "config": cfg, "layers": layers, "layerCount": n, "total": cfg + layers})
            })
            .collect();
        print_json(&json!({"reference": r.to_string(), "images": list}));
    } else {
        for (p, d, (cfg, layers, _)) in rows {
            let label = if p.is_empty() {
                String::new()
            } else {
                format!("{p}\t")
            };
            println!("{label}{}\t{d}", cfg + layers);
        }
    }
    Ok(())
}

/// The config's size, the layers' total size, and the number of layers.
fn image_size(m: &Manifest) -> Result<(u64, u64, usize), Failure> {
    let p = m.parse()?;
    let config = p.config.map(|c| c.size).unwrap_or(0);
    let layers: u64 = p.layers.iter().map(|l| l.size).sum();
    Ok((config, layers, p.layers.len()))
}
