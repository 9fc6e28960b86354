//! What a build command prints: the report on success, its retries on standard error, and
//! each `BuildError` as an exit code with a hint.

use anyhow::anyhow;
use berth_builder::pipeline::PipelineError;
use berth_builder::push::{BuildError, LayerError, Observer, Report};
use serde_json::json;

use crate::args::Common;
use crate::exit::Failure;
use crate::output::print_json;

/// Tells the user on standard error when the layer is streamed again.
pub(super) struct Stderr;

impl Observer for Stderr {
    fn layer_resent(&self, error: &berth_client::Error, attempt: u32) {
        eprintln!("layer upload failed ({error}); streaming the layer again (attempt {attempt})");
    }
}

/// The exit code and hint of a build failure: bad input the user gave is a usage error, the
/// registry's errors keep the client's table, anything else is "other".
pub(super) fn build_failure(e: BuildError) -> Failure {
    match e {
        BuildError::Registry { during, source } => Failure::client(during, source),
        BuildError::Layer(LayerError::Pipeline(PipelineError::EmptyInput)) => {
            Failure::other(anyhow!(
                "the layer was not pushed: standard input is empty: pipe a tar into it, or give --rootfs DIR or --archive FILE"
            ))
        }
        BuildError::Layer(_) => {
            // Parsers quote the bytes they choke on; a corrupt archive would spray binary
            // onto the terminal.
            let msg: String = e
                .to_string()
                .chars()
                .map(|c| {
                    if c.is_control() || c == '\u{fffd}' {
                        '?'
                    } else {
                        c
                    }
                })
                .collect();
            Failure::other(anyhow!(msg))
        }
        BuildError::NotAFolder { .. }
        | BuildError::ConfigFile { .. }
        | BuildError::Merge { .. }
        | BuildError::Variables(_)
        | BuildError::Edit(_)
        | BuildError::NoMatchingPlatform { .. }
        | BuildError::NotMultiPlatform { .. } => Failure::usage(e),
        other => Failure::other(other),
    }
}

/// Prints what was pushed: JSON with `--json`, else the layer and blob counts on standard
/// error and `pushed REPO@DIGEST` on standard output.
pub(super) fn report(common: &Common, r: &Report) {
    let dest = &r.reference;
    if common.json {
        let mut v = json!({
            "reference": dest.to_string(),
            "digest": r.digest.to_string(),
        });
        if let Some(l) = &r.layer {
            let d = &l.descriptor;
            v["layer"] = json!({ "digest": d.digest, "diff_id": l.diff_id, "size": d.size, "mediaType": d.media_type });
        }
        if let Some(c) = r.base_blobs {
            v["base_blobs"] = json!({ "present": c.present, "mounted": c.mounted, "copied": c.copied, "foreign": c.foreign });
        }
        print_json(&v);
    } else {
        if let Some(l) = &r.layer {
            eprintln!(
                "layer {} ({} bytes, diff_id {})",
                l.descriptor.digest, l.descriptor.size, l.diff_id
            );
        }
        if let Some(c) = r.base_blobs {
            eprintln!(
                "base blobs: {} already there, {} mounted, {} copied, {} foreign",
                c.present, c.mounted, c.copied, c.foreign
            );
        }
        println!("pushed {}@{}", dest.name(), r.digest);
    }
}
