//! Image builder subcommands: `push-layer` (a folder or an archive as a new single-layer
//! image), `append` (a layer on top of a remote image, without pulling it) and `mutate`
//! (config edits only). The work is `berth_builder::push`'s; this module turns flags into its
//! plans (`plan.rs`), hands it clients with the command's keychain, and prints its report or
//! maps its error to an exit code and a hint (`outcome.rs`).

mod outcome;
mod plan;

use std::io::IsTerminal as _;
use std::path::PathBuf;

use berth_builder::push::{self, LayerSource, NewImage, Rebuild};
use berth_client::Client;

use crate::args::{BuildCommand, Common};
use crate::connect::client;
use crate::exit::Failure;
use crate::parse::parse_ref;
use outcome::{Stderr, build_failure, report};
use plan::{config_plan, layer_plan, parse_platforms, platform_or_host, tar_options};

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
            let plan = NewImage {
                destination: parse_ref(&reference)?,
                platform: platform_or_host(platform.as_deref())?,
                format: format.into(),
                layer: layer_plan(source, &layer, &common)?,
                config: config_plan(&config)?,
            };
            let c = build_client(&plan.destination.registry, &common)?;
            let report_ = push::push_new_image(&c, &plan, &Stderr)
                .await
                .map_err(build_failure)?;
            report(&common, &report_);
            Ok(())
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
                    LayerSource::stream(std::io::stdin())
                }
                _ => return Err(Failure::usage("PATH filters need --rootfs DIR")),
            };
            let plan = Rebuild {
                base: parse_ref(&base)?,
                destination: parse_ref(&new)?,
                layer: Some(layer_plan(source, &layer, &common)?),
                config: config_plan(&config)?,
                platforms: parse_platforms(&platform)?,
                format: format.map(Into::into),
            };
            rebuild(&plan, &common).await
        }
        BuildCommand::Mutate {
            base,
            new,
            platform,
            format,
            config,
            common,
        } => {
            let plan = Rebuild {
                base: parse_ref(&base)?,
                destination: parse_ref(&new)?,
                layer: None,
                config: config_plan(&config)?,
                platforms: parse_platforms(&platform)?,
                format: format.map(Into::into),
            };
            rebuild(&plan, &common).await
        }
    }
}

/// `append` and `mutate`: one client when base and destination share a registry (so blobs
/// are mounted), two otherwise.
async fn rebuild(plan: &Rebuild, common: &Common) -> Result<(), Failure> {
    let dst = build_client(&plan.destination.registry, common)?;
    let src = if plan.base.registry == plan.destination.registry {
        dst.clone()
    } else {
        build_client(&plan.base.registry, common)?
    };
    let report_ = push::rebuild(&src, &dst, plan, &Stderr)
        .await
        .map_err(build_failure)?;
    report(common, &report_);
    Ok(())
}

/// A client for the build commands: chunked uploads, as the issue asks for layers.
fn build_client(registry: &str, common: &Common) -> Result<Client, Failure> {
    let mut common = common.clone();
    common.chunked = true;
    client(registry, &common, None)
}
