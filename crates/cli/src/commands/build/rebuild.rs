//! `berth append` and `berth mutate`: a new image from a remote base, with a layer added on top
//! (`append`) or only the config edited (`mutate`), without pulling the base's layers.

// The builder commands share their parent's imports and helpers.
use super::push_layer::created_by;
use super::*;

/// What `append` and `mutate` do to each selected image of the base.
pub(super) struct Edit {
    pub(super) layer: Option<(LayerSource, LayerArgs)>,
    pub(super) config: ConfigEditArgs,
    pub(super) platforms: Vec<Platform>,
    pub(super) format: Option<ImageFormat>,
    pub(super) verb: &'static str,
}

fn selected(edit: &Edit, child: &Descriptor) -> bool {
    let Some(p) = Platform::of(child.platform.as_ref()) else {
        return false;
    };
    if p.os == "unknown" {
        // Attestation manifests (BuildKit's unknown/unknown) describe the old image.
        return false;
    }
    edit.platforms.is_empty() || edit.platforms.iter().any(|want| want.matches_platform(&p))
}

pub(super) async fn rebuild(
    base_s: &str,
    new_s: &str,
    edit: Edit,
    common: &Common,
) -> Result<(), Failure> {
    let base = parse_ref(base_s)?;
    let dest = parse_ref(new_s)?;
    if let Some((LayerSource::Dir { root, .. }, _)) = &edit.layer
        && !root.is_dir()
    {
        return Err(Failure::usage(format!(
            "the rootfs {} is not a folder (or does not exist); give the folder to archive",
            root.display()
        )));
    }
    let same_registry = base.registry == dest.registry;
    let dst = build_client(&dest.registry, common)?;
    let src = if same_registry {
        dst.clone()
    } else {
        build_client(&base.registry, common)?
    };
    let base_manifest = src
        .get_manifest(&base.repository, &base.reference_str())
        .await
        .map_err(|e| Failure::client("base image", e))?;
    let base_format = ImageFormat::of_media_type(&base_manifest.media_type).ok_or_else(|| {
        Failure::other(
            anyhow!(
                "the base {base_s} is a {} manifest; append and mutate take Docker schema 2 or OCI images and indexes",
                base_manifest.media_type
            ),
        )
    })?;
    let format = edit.format.unwrap_or(base_format);
    let base_label = BaseImage {
        name: base.to_string(),
        digest: base_manifest.digest.clone(),
    };
    let created = created()?;
    let mut counts = BlobCounts::default();

    // Check every config edit on a scratch config first, so that a bad file fails before
    // any upload.
    edit_config(&mut json!({}), &edit.config, Some(&base_label))?;

    let parsed = base_manifest
        .parse()
        .map_err(|e| Failure::client("base image", e))?;
    // The images to rebuild: the base itself, or the selected children of its index.
    let targets: Vec<Manifest> = if base_manifest.is_index() {
        let mut v = Vec::new();
        for child in &parsed.manifests {
            if selected(&edit, child) {
                let m = src
                    .get_manifest(&base.repository, &child.digest.to_string())
                    .await
                    .map_err(|e| Failure::client("base image", e))?;
                v.push(m);
            }
        }
        if v.is_empty() {
            return Err(Failure::usage(format!(
                "no platform of {base_s} matches --platform; see `berth manifest {base_s}`"
            )));
        }
        v
    } else {
        if !edit.platforms.is_empty() {
            return Err(Failure::usage(format!(
                "{base_s} is a single-platform image; --platform applies to multi-arch bases only"
            )));
        }
        vec![base_manifest.clone()]
    };

    // The new layer is built and uploaded once, whatever the number of platforms.
    let layer_info = match &edit.layer {
        Some((source, layer_args)) => {
            let pipeline = pipeline_options(layer_args, common, format.flavor())?;
            Some(
                push_layer(
                    &dst,
                    &dest.repository,
                    source,
                    pipeline,
                    layer_args.attempts,
                )
                .await
                .map_err(layer_failure)?,
            )
        }
        None => None,
    };

    let mut replaced: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    for target in &targets {
        let tp = target
            .parse()
            .map_err(|e| Failure::client("base image", e))?;
        if tp.config.is_none() {
            return Err(Failure::other(anyhow!(
                "{} is not an image manifest (no config)",
                target.digest
            )));
        }
        ensure_blobs(
            &src,
            &base.repository,
            &dst,
            &dest.repository,
            same_registry,
            &tp.layers,
            &mut counts,
        )
        .await
        .map_err(|e| Failure::client("base layers", e))?;
        let config_bytes = src
            .get_config(&base.repository, target)
            .await
            .map_err(|e| Failure::client("base config", e))?;
        let mut config: Value = serde_json::from_slice(&config_bytes).map_err(|e| {
            Failure::other(anyhow!(
                "the base config of {} is not JSON: {e}",
                target.digest
            ))
        })?;
        edit_config(&mut config, &edit.config, Some(&base_label))?;
        match (&layer_info, &edit.layer) {
            (Some(info), Some((source, _))) => image::append_layer(
                &mut config,
                &info.diff_id,
                &created,
                &created_by(edit.verb, source),
            ),
            _ => image::record_change(&mut config, &created, "berth mutate"),
        }
        .map_err(|e| Failure::other(anyhow!("{e}")))?;
        let config_blob = push_config(&dst, &dest.repository, &config, format).await?;
        let base_json: Value = serde_json::from_slice(&target.bytes)
            .map_err(|e| Failure::other(anyhow!("the base manifest is not JSON: {e}")))?;
        let new_layer = layer_info.as_ref().map(|l| &l.descriptor);
        let manifest = image::rebuild_manifest(&base_json, format, &config_blob, new_layer)
            .map_err(|e| Failure::other(anyhow!("{e}")))?;
        if base_manifest.is_index() {
            let m = put_json(
                &dst,
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
                &dst,
                &dest.repository,
                &dest.reference_str(),
                &manifest,
                format.manifest_media_type(),
            )
            .await?;
            report(
                common,
                "pushed",
                &dest,
                &m.digest,
                layer_info.as_ref(),
                Some(counts),
            );
            return Ok(());
        }
    }

    // Children left as they were must exist in the destination too.
    if !(same_registry && base.repository == dest.repository) {
        for child in &parsed.manifests {
            if replaced.contains_key(&child.digest) {
                continue;
            }
            let m = src
                .get_manifest(&base.repository, &child.digest.to_string())
                .await
                .map_err(|e| Failure::client("base image", e))?;
            let cp = m.parse().map_err(|e| Failure::client("base image", e))?;
            let mut blobs = cp.layers.clone();
            blobs.extend(cp.config.clone());
            ensure_blobs(
                &src,
                &base.repository,
                &dst,
                &dest.repository,
                same_registry,
                &blobs,
                &mut counts,
            )
            .await
            .map_err(|e| Failure::client("base blobs", e))?;
            dst.put_manifest(&dest.repository, &m.digest.to_string(), &m)
                .await
                .map_err(|e| Failure::client("", e))?;
        }
    }
    let base_json: Value = serde_json::from_slice(&base_manifest.bytes)
        .map_err(|e| Failure::other(anyhow!("the base index is not JSON: {e}")))?;
    let index = image::rebuild_index(&base_json, format, &replaced)
        .map_err(|e| Failure::other(anyhow!("{e}")))?;
    let m = put_json(
        &dst,
        &dest.repository,
        &dest.reference_str(),
        &index,
        format.index_media_type(),
    )
    .await?;
    report(
        common,
        "pushed",
        &dest,
        &m.digest,
        layer_info.as_ref(),
        Some(counts),
    );
    Ok(())
}

fn digest_of(doc: &Value) -> String {
    Digest::sha256_of(&image::to_bytes(doc)).to_string()
}
