//! Image builder subcommands: `push-layer` (a folder or an archive as a new single-layer image,
//! `push_layer.rs`), `append` (a layer on top of a remote image, without pulling it) and
//! `mutate` (config edits only), both in `rebuild.rs`. The layer comes from the `berth-builder`
//! pipeline and goes to the registry through `berth-client` (`upload.rs`); this module holds
//! what the three share: the dispatch, tar and pipeline options, config edits and the report.

mod push_layer;
mod rebuild;
mod upload;

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
use serde_json::{Value, json};

use crate::args::Common;
use crate::args::{BuildCommand, CompressionArg, ConfigEditArgs, LayerArgs};
use crate::connect::client;
use crate::exit::Failure;
use crate::output::print_json;
use crate::parse::{parse_ref, parse_size};
use upload::{BlobCounts, LayerPushError, LayerSource, ensure_blobs, push_layer};

use push_layer::push_new_image;
use rebuild::{Edit, rebuild};

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
    args: &ConfigEditArgs,
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
