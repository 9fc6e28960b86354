//! Image builder subcommands: `push-layer` (a folder or an archive as a new single-layer image),
//! `append` (a layer on top of a remote image, without pulling it) and `mutate` (config edits
//! only). The layer comes from the `berth-builder` pipeline and goes to the registry through
//! `berth-client`; this module decides what goes into the config and manifests.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::anyhow;
use berth_builder::compression::{Compression, MediaTypeFlavor};
use berth_builder::config_merge::merge_document;
use berth_builder::image::{self, ConfigEdits, ImageFormat, Platform};
use berth_builder::labels::{self, BaseImage};
use berth_builder::layer::TarOptions;
use berth_builder::pipeline::{LayerInfo, PipelineOptions};
use berth_client::{Client, Digest, Manifest};
use berth_oci::{Descriptor, Reference};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::args::Common;
use crate::build::upload::{BlobCounts, LayerPushError, LayerSource, ensure_blobs, push_layer};
use crate::connect::client;
use crate::exit::{self, Failure};
use crate::output::print_json;
use crate::parse::{parse_ref, parse_size};

/// Layer compression choices.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    /// gzip (every client reads it); parallel blocks across cores.
    Gzip,
    /// zstd (faster and smaller; needs containerd 1.5+, Docker 23+, podman 3+).
    Zstd,
    /// No compression (the blob is the tar).
    None,
}

/// Manifest format choices.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// OCI image manifest and index.
    Oci,
    /// Docker schema 2 manifest and manifest list.
    Docker,
}

impl From<FormatArg> for ImageFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Oci => ImageFormat::Oci,
            FormatArg::Docker => ImageFormat::Docker,
        }
    }
}

/// How the new layer is written.
#[derive(Args, Clone, Debug)]
pub struct LayerArgs {
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,
    /// Compression level (gzip 0-9, default 6; zstd 1-22, default 3).
    #[arg(long, allow_negative_numbers = true)]
    level: Option<i32>,
    /// Compression threads (0: all cores). Pin it when digests must match across machines
    /// with different core counts (gzip only).
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
    /// Record this owner for every entry instead of the owner on disk.
    #[arg(long, value_name = "UID:GID")]
    owner: Option<String>,
    /// Copy the owner's permission bits to the group (for images run under an arbitrary uid in group 0).
    #[arg(long)]
    u2g: bool,
    /// Delete this path of the lower layers (a whiteout); `/dir/*` hides everything lower layers had in /dir. Repeatable.
    #[arg(long, value_name = "PATH")]
    remove: Vec<String>,
    /// Upload attempts; each retry streams the layer again from its source (never from a temporary file).
    #[arg(long, default_value_t = 3, value_name = "N")]
    attempts: u32,
}

/// Edits of the image config.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// YAML or JSON file merged into the image config (`null` deletes a key; `_*: null` first
    /// clears a list or map; `$VAR` expands inside double quotes). Repeatable, applied in order.
    #[arg(long = "config", value_name = "FILE")]
    config_files: Vec<PathBuf>,
    /// Label KEY=VALUE. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Environment variable KEY=VALUE (replaces one of the same name). Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Entrypoint: a JSON list (`["/app","--flag"]`) or words split on spaces; "" clears it.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// Cmd: a JSON list or words split on spaces; "" clears it.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    cmd: Option<String>,
    /// Working directory.
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// User (name, uid or uid:gid).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Exposed port, PORT[/tcp|udp|sctp]. Repeatable.
    #[arg(long, value_name = "PORT")]
    expose: Vec<String>,
    /// Do not add the standard org.opencontainers.image.* labels (created, revision, source,
    /// version, base.name, base.digest) taken from GitLab CI, GitHub Actions or git.
    #[arg(long)]
    no_labels: bool,
}

/// Image builder subcommands.
#[derive(Subcommand)]
pub enum BuildCommand {
    /// Push a folder (or an existing archive) as a new single-layer image.
    ///
    /// berth push-layer ROOTFS REF [PATH...]  |  berth push-layer --archive FILE REF
    ///
    /// PATH filters select what goes in (globs relative to the rootfs: `usr/bin/*`, `etc/**/*.conf`).
    /// The tar is hashed, compressed, hashed again and uploaded in chunks in one streaming pass.
    #[command(after_help = exit::help())]
    PushLayer {
        /// ROOTFS REF [PATH...], or only REF with --archive.
        #[arg(required = true, value_name = "ROOTFS REF [PATH...]")]
        args: Vec<String>,
        /// Upload this tar, tar.gz or tar.zst as it is (validated, diff_id computed on the way).
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// Platform of the image.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// Manifest format.
        #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
        format: FormatArg,
        #[command(flatten)]
        layer: LayerArgs,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Append a layer to a remote image and push the result, without downloading the base's layers.
    ///
    /// The layer comes from --rootfs DIR, --archive FILE, or a tar on standard input. A multi-arch
    /// base gets the layer on every platform (or the --platform ones) and a new index.
    #[command(after_help = exit::help())]
    Append {
        /// The base image.
        base: String,
        /// Where to push the result.
        new: String,
        /// PATH filters inside --rootfs.
        paths: Vec<String>,
        /// Folder to add as the new layer.
        #[arg(long, value_name = "DIR", conflicts_with = "archive")]
        rootfs: Option<PathBuf>,
        /// Tar, tar.gz or tar.zst to add as it is.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        /// Only append to these platforms of a multi-arch base (the others are kept unchanged). Repeatable.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Vec<String>,
        /// Manifest format of the result (default: the base's).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[command(flatten)]
        layer: LayerArgs,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Edit a remote image's config (env, entrypoint, labels, a merge file…) and push it under a
    /// new reference; layers are mounted, never downloaded.
    #[command(after_help = exit::help())]
    Mutate {
        /// The image to edit.
        base: String,
        /// Where to push the result (may be the same tag).
        new: String,
        /// Only edit these platforms of a multi-arch image. Repeatable.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Vec<String>,
        /// Manifest format of the result (default: the base's).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        common: Common,
    },
}

/// Runs a build subcommand; the error carries the process exit code.
pub async fn run(cmd: BuildCommand) -> Result<(), Failure> {
    match cmd {
        BuildCommand::PushLayer {
            args,
            archive,
            platform,
            format,
            layer,
            config,
            common,
        } => {
            let (source, reference) = match archive {
                Some(path) => {
                    if args.len() != 1 {
                        return Err(Failure::usage(
                            "with --archive give only the destination: berth push-layer --archive FILE REF",
                        ));
                    }
                    (LayerSource::Archive(path), args[0].clone())
                }
                None => {
                    if args.len() < 2 {
                        return Err(Failure::usage(
                            "give a rootfs folder and a destination: berth push-layer ROOTFS REF [PATH...]",
                        ));
                    }
                    let root = PathBuf::from(&args[0]);
                    let tar = tar_options(&layer, args[2..].to_vec())?;
                    (LayerSource::Dir { root, tar }, args[1].clone())
                }
            };
            let platform = match platform {
                Some(p) => Platform::parse(&p).map_err(Failure::usage)?,
                None => Platform::host(),
            };
            push_new_image(
                source,
                &reference,
                platform,
                format.into(),
                &layer,
                &config,
                &common,
            )
            .await
        }
        BuildCommand::Append {
            base,
            new,
            paths,
            rootfs,
            archive,
            platform,
            format,
            layer,
            config,
            common,
        } => {
            let source = match (rootfs, archive) {
                (Some(root), None) => LayerSource::Dir {
                    root,
                    tar: tar_options(&layer, paths)?,
                },
                (None, Some(path)) if paths.is_empty() => LayerSource::Archive(path),
                (None, None) if paths.is_empty() => {
                    if std::io::stdin().is_terminal() {
                        return Err(Failure::usage(
                            "no layer given: use --rootfs DIR, --archive FILE, or pipe a tar into standard input",
                        ));
                    }
                    LayerSource::Stdin
                }
                _ => return Err(Failure::usage("PATH filters need --rootfs DIR")),
            };
            let edit = Edit {
                layer: Some((source, layer)),
                config,
                platforms: parse_platforms(&platform)?,
                format: format.map(Into::into),
                verb: "append",
            };
            rebuild(&base, &new, edit, &common).await
        }
        BuildCommand::Mutate {
            base,
            new,
            platform,
            format,
            config,
            common,
        } => {
            let edit = Edit {
                layer: None,
                config,
                platforms: parse_platforms(&platform)?,
                format: format.map(Into::into),
                verb: "mutate",
            };
            rebuild(&base, &new, edit, &common).await
        }
    }
}

fn parse_platforms(list: &[String]) -> Result<Vec<Platform>, Failure> {
    list.iter()
        .flat_map(|p| p.split(','))
        .map(|p| Platform::parse(p).map_err(Failure::usage))
        .collect()
}

fn tar_options(layer: &LayerArgs, include: Vec<String>) -> Result<TarOptions, Failure> {
    let owner = match &layer.owner {
        None => None,
        Some(s) => {
            let parsed = s
                .split_once(':')
                .and_then(|(u, g)| Some((u.parse::<u64>().ok()?, g.parse::<u64>().ok()?)));
            Some(parsed.ok_or_else(|| {
                Failure::usage(format!(
                    "bad --owner {s:?}: expected numeric UID:GID, such as 0:0"
                ))
            })?)
        }
    };
    Ok(TarOptions {
        mtime_clamp: source_date_epoch()?,
        owner,
        u2g: layer.u2g,
        include,
        remove: layer.remove.clone(),
    })
}

fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

fn source_date_epoch() -> Result<Option<u64>, Failure> {
    labels::source_date_epoch(&process_env()).map_err(Failure::usage)
}

/// `created` for the config and history: `SOURCE_DATE_EPOCH` when set, so that the same
/// input gives the same digests, else now.
fn created() -> Result<String, Failure> {
    let secs = match source_date_epoch()? {
        Some(s) => s,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    Ok(labels::rfc3339(secs))
}

fn pipeline_options(
    layer: &LayerArgs,
    common: &Common,
    flavor: MediaTypeFlavor,
) -> Result<PipelineOptions, Failure> {
    let compression = match layer.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => {
            let level = layer
                .level
                .unwrap_or(berth_builder::compression::DEFAULT_GZIP_LEVEL as i32);
            let level = u32::try_from(level).map_err(|_| {
                Failure::usage(format!("gzip level {level} is out of range; use 0 to 9"))
            })?;
            Compression::Gzip {
                level,
                threads: layer.threads,
            }
        }
        CompressionArg::Zstd => Compression::Zstd {
            level: layer
                .level
                .unwrap_or(berth_builder::compression::DEFAULT_ZSTD_LEVEL),
            threads: layer.threads,
        },
    };
    Ok(PipelineOptions {
        compression,
        flavor,
        chunk_size: parse_size(&common.chunk_size)?,
        ..PipelineOptions::default()
    })
}

/// A client for the build commands: chunked uploads, as the issue asks for layers.
fn build_client(registry: &str, common: &Common) -> Result<Client, Failure> {
    let mut common = common.clone();
    common.chunked = true;
    client(registry, &common, None)
}

/// Applies the config edits in order: automatic labels, merge files, then flags (a flag wins).
fn edit_config(
    config: &mut Value,
    args: &ConfigArgs,
    base: Option<&BaseImage>,
) -> Result<(), Failure> {
    let env = process_env();
    if !args.no_labels {
        let cwd = std::env::current_dir().ok();
        let l = labels::standard_labels(&env, cwd.as_deref(), base).map_err(Failure::usage)?;
        labels::apply_labels(config, &l).map_err(|e| Failure::other(anyhow!("{e}")))?;
    }
    for file in &args.config_files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::usage(format!(
                "cannot read the config file {}: {e}",
                file.display()
            ))
        })?;
        merge_document(config, &text, &env)
            .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    }
    let mut labels = BTreeMap::new();
    for kv in &args.label {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Failure::usage(format!("bad --label {kv:?}: expected KEY=VALUE")))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let edits = ConfigEdits {
        env: args.env.clone(),
        entrypoint: args
            .entrypoint
            .as_deref()
            .map(image::parse_command)
            .transpose()
            .map_err(Failure::usage)?,
        cmd: args
            .cmd
            .as_deref()
            .map(image::parse_command)
            .transpose()
            .map_err(Failure::usage)?,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        labels,
        expose: args.expose.clone(),
    };
    image::apply_edits(config, &edits).map_err(Failure::usage)
}

fn layer_failure(e: LayerPushError) -> Failure {
    match e {
        LayerPushError::Build(msg) => {
            // Parsers quote the bytes they choke on; a corrupt archive would spray binary
            // onto the terminal.
            let msg: String = msg
                .chars()
                .map(|c| {
                    if c.is_control() || c == '\u{fffd}' {
                        '?'
                    } else {
                        c
                    }
                })
                .collect();
            Failure::other(anyhow!("the layer was not pushed: {msg}"))
        }
        LayerPushError::Registry(e) => Failure::client("layer upload", e),
    }
}

async fn put_json(
    c: &Client,
    repo: &str,
    reference: &str,
    doc: &Value,
    media_type: &str,
) -> Result<Manifest, Failure> {
    let m = Manifest::from_bytes(image::to_bytes(doc), Some(media_type))
        .map_err(|e| Failure::client("", e))?;
    c.put_manifest(repo, reference, &m)
        .await
        .map_err(|e| Failure::client("", e))?;
    Ok(m)
}

async fn push_config(
    c: &Client,
    repo: &str,
    config: &Value,
    format: ImageFormat,
) -> Result<Descriptor, Failure> {
    let bytes = image::to_bytes(config);
    let size = bytes.len() as u64;
    let digest = c
        .push_blob_bytes(repo, bytes.into())
        .await
        .map_err(|e| Failure::client("config upload", e))?;
    Ok(Descriptor::new(format.config_media_type(), digest, size))
}

fn report(
    common: &Common,
    verb: &str,
    dest: &Reference,
    digest: &Digest,
    layer: Option<&LayerInfo>,
    counts: Option<BlobCounts>,
) {
    if common.json {
        let mut v = json!({
            "reference": dest.to_string(),
            "digest": digest.to_string(),
        });
        if let Some(l) = layer {
            let d = &l.descriptor;
            v["layer"] = json!({ "digest": d.digest, "diff_id": l.diff_id, "size": d.size, "mediaType": d.media_type });
        }
        if let Some(c) = counts {
            v["base_blobs"] = json!({ "present": c.present, "mounted": c.mounted, "copied": c.copied, "foreign": c.foreign });
        }
        print_json(&v);
    } else {
        if let Some(l) = layer {
            eprintln!(
                "layer {} ({} bytes, diff_id {})",
                l.descriptor.digest, l.descriptor.size, l.diff_id
            );
        }
        if let Some(c) = counts {
            eprintln!(
                "base blobs: {} already there, {} mounted, {} copied, {} foreign",
                c.present, c.mounted, c.copied, c.foreign
            );
        }
        println!("{verb} {}@{digest}", dest.name());
    }
}

async fn push_new_image(
    source: LayerSource,
    reference: &str,
    platform: Platform,
    format: ImageFormat,
    layer: &LayerArgs,
    args: &ConfigArgs,
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

fn created_by(verb: &str, source: &LayerSource) -> String {
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

/// What `append` and `mutate` do to each selected image of the base.
struct Edit {
    layer: Option<(LayerSource, LayerArgs)>,
    config: ConfigArgs,
    platforms: Vec<Platform>,
    format: Option<ImageFormat>,
    verb: &'static str,
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

async fn rebuild(base_s: &str, new_s: &str, edit: Edit, common: &Common) -> Result<(), Failure> {
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
