//! Build flags turned into `berth_builder::push` plans. The binary reads the environment, so
//! the variables a build honours (CI variables, `SOURCE_DATE_EPOCH`, `$VAR`s in merge files)
//! are collected here and handed to the library.

use std::collections::BTreeMap;

use berth_builder::compression::{Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
use berth_builder::image::{self, ConfigEdits, Platform};
use berth_builder::labels;
use berth_builder::layer::TarOptions;
use berth_builder::pipeline::PipelineOptions;
use berth_builder::push::{ConfigPlan, LayerPlan, LayerSource};

use crate::args::{Common, CompressionArg, ConfigEditArgs, LayerArgs};
use crate::exit::Failure;
use crate::parse::parse_size;

/// The process environment, as the variables a build may read.
fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// `--platform`, or this host's.
pub(super) fn platform_or_host(platform: Option<&str>) -> Result<Platform, Failure> {
    match platform {
        Some(p) => Platform::parse(p).map_err(Failure::usage),
        None => Ok(Platform::host()),
    }
}

/// Repeated, comma-separated `--platform` values.
pub(super) fn parse_platforms(list: &[String]) -> Result<Vec<Platform>, Failure> {
    list.iter()
        .flat_map(|p| p.split(','))
        .map(|p| Platform::parse(p).map_err(Failure::usage))
        .collect()
}

/// Tar options from the layer flags; `include` are the PATH filters.
pub(super) fn tar_options(layer: &LayerArgs, include: Vec<String>) -> Result<TarOptions, Failure> {
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
        mtime_clamp: labels::source_date_epoch(&process_env()).map_err(Failure::usage)?,
        owner,
        u2g: layer.u2g,
        include,
        remove: layer.remove.clone(),
    })
}

/// The layer of a build: its source, compression and chunking, and send attempts.
pub(super) fn layer_plan(
    source: LayerSource,
    layer: &LayerArgs,
    common: &Common,
) -> Result<LayerPlan, Failure> {
    let compression = match layer.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => {
            let level = layer.level.unwrap_or(DEFAULT_GZIP_LEVEL as i32);
            let level = u32::try_from(level).map_err(|_| {
                Failure::usage(format!("gzip level {level} is out of range; use 0 to 9"))
            })?;
            Compression::Gzip {
                level,
                threads: layer.threads,
            }
        }
        CompressionArg::Zstd => Compression::Zstd {
            level: layer.level.unwrap_or(DEFAULT_ZSTD_LEVEL),
            threads: layer.threads,
        },
    };
    Ok(LayerPlan {
        source,
        pipeline: PipelineOptions {
            compression,
            chunk_size: parse_size(&common.chunk_size)?,
            ..PipelineOptions::default()
        },
        attempts: layer.attempts,
    })
}

/// The config edits: automatic labels (unless `--no-labels`), merge files, then flags.
pub(super) fn config_plan(args: &ConfigEditArgs) -> Result<ConfigPlan, Failure> {
    let mut labels = BTreeMap::new();
    for kv in &args.label {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Failure::usage(format!("bad --label {kv:?}: expected KEY=VALUE")))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let command = |s: &Option<String>| {
        s.as_deref()
            .map(image::parse_command)
            .transpose()
            .map_err(Failure::usage)
    };
    Ok(ConfigPlan {
        vars: process_env(),
        standard_labels: !args.no_labels,
        git_dir: std::env::current_dir().ok(),
        merge_files: args.config_files.clone(),
        edits: ConfigEdits {
            env: args.env.clone(),
            entrypoint: command(&args.entrypoint)?,
            cmd: command(&args.cmd)?,
            workdir: args.workdir.clone(),
            user: args.user.clone(),
            labels,
            expose: args.expose.clone(),
        },
    })
}
