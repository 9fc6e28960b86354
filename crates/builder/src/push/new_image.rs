//! A folder or an archive as a new single-layer image (`berth push-layer`).

use berth_client::Client;

use super::blobs::{push_config, put_json};
use super::layer::push_layer;
use super::{BuildError, NewImage, Observer, Report};
use crate::image;

/// Builds `plan`'s layer, streams it to `client`'s registry, and writes a config and a
/// manifest around it under [`NewImage::destination`]. The config edits are checked before
/// any byte is uploaded. `client` must talk to the destination's registry.
///
/// # Errors
///
/// A [`BuildError`]; nothing is tagged on failure.
pub async fn push_new_image(
    client: &Client,
    plan: &NewImage,
    observer: &dyn Observer,
) -> Result<Report, BuildError> {
    let dest = &plan.destination;
    plan.layer.source.check()?;
    let created = plan.config.created()?;
    let mut config = image::new_config(&plan.platform, &created);
    // Edits first: a bad config file is reported before any byte is uploaded.
    plan.config.apply(&mut config, None)?;
    let pipeline = crate::pipeline::PipelineOptions {
        flavor: plan.format.flavor(),
        ..plan.layer.pipeline
    };
    let info = push_layer(client, &dest.repository, &plan.layer, pipeline, observer).await?;
    image::append_layer(
        &mut config,
        &info.diff_id,
        &created,
        &plan.layer.source.created_by("push-layer"),
    )
    .map_err(BuildError::Image)?;
    let config_blob = push_config(client, &dest.repository, &config, plan.format).await?;
    let manifest = image::new_manifest(
        plan.format,
        &config_blob,
        std::slice::from_ref(&info.descriptor),
    )
    .map_err(BuildError::Image)?;
    let m = put_json(
        client,
        &dest.repository,
        &dest.reference_str(),
        &manifest,
        plan.format.manifest_media_type(),
    )
    .await?;
    Ok(Report {
        reference: dest.clone(),
        digest: m.digest,
        layer: Some(info),
        base_blobs: None,
    })
}
