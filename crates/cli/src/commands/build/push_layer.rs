//! `berth push-layer`: a folder or an archive as a new single-layer image.

// The builder commands share their parent's imports and helpers.
use super::*;

pub(super) async fn push_new_image(
    source: LayerSource,
    reference: &str,
    platform: Platform,
    format: ImageFormat,
    layer: &LayerArgs,
    args: &ConfigEditArgs,
    common: &Common,
) -> Result<(), Failure> {
    let dest = parse_ref(reference)?;
    if let LayerSource::Dir { root, .. } = &source
        && !root.is_dir()
    {
        return Err(Failure::usage(format!(
            "the rootfs {} is not a folder (or does not exist); give the folder to archive",
            root.display()
        )));
    }
    let created = created()?;
    let mut config = image::new_config(&platform, &created);
    // Edits first: a bad config file is reported before any byte is uploaded.
    edit_config(&mut config, args, None)?;
    let c = build_client(&dest.registry, common)?;
    let pipeline = pipeline_options(layer, common, format.flavor())?;
    let info = push_layer(&c, &dest.repository, &source, pipeline, layer.attempts)
        .await
        .map_err(layer_failure)?;
    image::append_layer(
        &mut config,
        &info.diff_id,
        &created,
        &created_by("push-layer", &source),
    )
    .map_err(|e| Failure::other(anyhow!("{e}")))?;
    let config_blob = push_config(&c, &dest.repository, &config, format).await?;
    let manifest =
        image::new_manifest(format, &config_blob, std::slice::from_ref(&info.descriptor))
            .map_err(|e| Failure::other(anyhow!("{e}")))?;
    let m = put_json(
        &c,
        &dest.repository,
        &dest.reference_str(),
        &manifest,
        format.manifest_media_type(),
    )
    .await?;
    report(common, "pushed", &dest, &m.digest, Some(&info), None);
    Ok(())
}

pub(super) fn created_by(verb: &str, source: &LayerSource) -> String {
    match source {
        LayerSource::Dir { root, tar } => {
            let mut s = format!("berth {verb} {}", root.display());
            for p in &tar.include {
                s.push(' ');
                s.push_str(p);
            }
            for p in &tar.remove {
                s.push_str(" --remove ");
                s.push_str(p);
            }
            s
        }
        LayerSource::Archive(p) => format!("berth {verb} --archive {}", p.display()),
        LayerSource::Stdin => format!("berth {verb} (tar from standard input)"),
    }
}
