//! A new image from a remote base, with a layer added on top (`append`) or only the config
//! edited (`mutate`), without pulling the base's layers.

use std::collections::BTreeMap;

use berth_client::{Client, Manifest};
use berth_oci::{Descriptor, Digest, Platform};
use serde_json::{Value, json};

use super::blobs::{BlobCounts, Ends, digest_of, push_config, put_json};
use super::layer::push_layer;
use super::{BuildError, Observer, Rebuild, Report};
use crate::image::{self, ImageFormat};
use crate::labels::BaseImage;
use crate::pipeline::PipelineOptions;

fn selected(platforms: &[Platform], child: &Descriptor) -> bool {
    let Some(p) = Platform::of(child.platform.as_ref()) else {
        return false;
    };
    if p.os == "unknown" {
        // Attestation manifests (BuildKit's unknown/unknown) describe the old image.
        return false;
    }
    platforms.is_empty() || platforms.iter().any(|want| want.matches_platform(&p))
}

fn not_json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::NotJson { what, source }
}

/// Rebuilds `plan.base` (read with `src`) as `plan.destination` (written with `dst`): see
/// [`Rebuild`]. On one registry, pass the same client twice; blobs are then mounted rather
/// than copied. The new layer is built and uploaded once, whatever the number of platforms;
/// every config edit is checked before any upload.
///
/// # Errors
///
/// A [`BuildError`]; nothing is tagged on failure.
pub async fn rebuild(
    src: &Client,
    dst: &Client,
    plan: &Rebuild,
    observer: &dyn Observer,
) -> Result<Report, BuildError> {
    let (base, dest) = (&plan.base, &plan.destination);
    if let Some(layer) = &plan.layer {
        layer.source.check()?;
    }
    let ends = Ends {
        src,
        src_repo: &base.repository,
        dst,
        dst_repo: &dest.repository,
        same_registry: base.registry == dest.registry,
    };
    let base_manifest = src
        .get_manifest(&base.repository, &base.reference_str())
        .await
        .map_err(BuildError::registry("base image"))?;
    let base_format = ImageFormat::of_media_type(&base_manifest.media_type).ok_or_else(|| {
        BuildError::UnsupportedBase {
            base: Box::new(base.clone()),
            media_type: base_manifest.media_type.clone(),
        }
    })?;
    let format = plan.format.unwrap_or(base_format);
    let base_label = BaseImage {
        name: base.to_string(),
        digest: base_manifest.digest.clone(),
    };
    let created = plan.config.created()?;
    let mut counts = BlobCounts::default();

    // Check every config edit on a scratch config first, so that a bad file fails before
    // any upload.
    plan.config.apply(&mut json!({}), Some(&base_label))?;

    let parsed = base_manifest
        .parse()
        .map_err(BuildError::registry("base image"))?;
    // The images to rebuild: the base itself, or the selected children of its index.
    let targets: Vec<Manifest> = if base_manifest.is_index() {
        let mut v = Vec::new();
        for child in &parsed.manifests {
            if selected(&plan.platforms, child) {
                let m = src
                    .get_manifest(&base.repository, &child.digest.to_string())
                    .await
                    .map_err(BuildError::registry("base image"))?;
                v.push(m);
            }
        }
        if v.is_empty() {
            return Err(BuildError::NoMatchingPlatform {
                base: Box::new(base.clone()),
            });
        }
        v
    } else {
        if !plan.platforms.is_empty() {
            return Err(BuildError::NotMultiPlatform {
                base: Box::new(base.clone()),
            });
        }
        vec![base_manifest.clone()]
    };

    let layer_info = match &plan.layer {
        Some(layer) => {
            let pipeline = PipelineOptions {
                flavor: format.flavor(),
                ..layer.pipeline
            };
            Some(push_layer(dst, &dest.repository, layer, pipeline, observer).await?)
        }
        None => None,
    };
    let verb = if plan.layer.is_some() {
        "append"
    } else {
        "mutate"
    };

    let mut replaced: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    for target in &targets {
        let tp = target.parse().map_err(BuildError::registry("base image"))?;
        if tp.config.is_none() {
            return Err(BuildError::NotAnImage {
                digest: target.digest.clone(),
            });
        }
        ends.ensure_blobs(&tp.layers, &mut counts)
            .await
            .map_err(BuildError::registry("base layers"))?;
        let config_bytes = src
            .get_config(&base.repository, target)
            .await
            .map_err(BuildError::registry("base config"))?;
        let mut config: Value = serde_json::from_slice(&config_bytes)
            .map_err(not_json(format!("the base config of {}", target.digest)))?;
        plan.config.apply(&mut config, Some(&base_label))?;
        match (&layer_info, &plan.layer) {
            (Some(info), Some(layer)) => image::append_layer(
                &mut config,
                &info.diff_id,
                &created,
                &layer.source.created_by(verb),
            ),
            _ => image::record_change(&mut config, &created, "berth mutate"),
        }
        .map_err(BuildError::Image)?;
        let config_blob = push_config(dst, &dest.repository, &config, format).await?;
        let base_json: Value =
            serde_json::from_slice(&target.bytes).map_err(not_json("the base manifest"))?;
        let new_layer = layer_info.as_ref().map(|l| &l.descriptor);
        let manifest = image::rebuild_manifest(&base_json, format, &config_blob, new_layer)
            .map_err(BuildError::Image)?;
        if base_manifest.is_index() {
            let m = put_json(
                dst,
                &dest.repository,
                &digest_of(&manifest),
                &manifest,
                format.manifest_media_type(),
            )
            .await?;
            replaced.insert(
                target.digest.clone(),
                Descriptor::new(m.media_type.clone(), m.digest.clone(), m.size()),
            );
        } else {
            let m = put_json(
                dst,
                &dest.repository,
                &dest.reference_str(),
                &manifest,
                format.manifest_media_type(),
            )
            .await?;
            return Ok(Report {
                reference: dest.clone(),
                digest: m.digest,
                layer: layer_info,
                base_blobs: Some(counts),
            });
        }
    }

    // Children left as they were must exist in the destination too.
    if !(ends.same_registry && base.repository == dest.repository) {
        for child in &parsed.manifests {
            if replaced.contains_key(&child.digest) {
                continue;
            }
            let m = src
                .get_manifest(&base.repository, &child.digest.to_string())
                .await
                .map_err(BuildError::registry("base image"))?;
            let cp = m.parse().map_err(BuildError::registry("base image"))?;
            let mut blobs = cp.layers.clone();
            blobs.extend(cp.config.clone());
            ends.ensure_blobs(&blobs, &mut counts)
                .await
                .map_err(BuildError::registry("base blobs"))?;
            dst.put_manifest(&dest.repository, &m.digest.to_string(), &m)
                .await
                .map_err(BuildError::registry(""))?;
        }
    }
    let base_json: Value =
        serde_json::from_slice(&base_manifest.bytes).map_err(not_json("the base index"))?;
    let index = image::rebuild_index(&base_json, format, &replaced).map_err(BuildError::Image)?;
    let m = put_json(
        dst,
        &dest.repository,
        &dest.reference_str(),
        &index,
        format.index_media_type(),
    )
    .await?;
    Ok(Report {
        reference: dest.clone(),
        digest: m.digest,
        layer: layer_info,
        base_blobs: Some(counts),
    })
}
