//! What the client commands print on standard output: JSON with `--json`, else lines.

use berth_client::CopyReport;
use serde_json::json;

use crate::args::Common;

/// Prints pretty JSON.
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
}

/// Prints a list: `{key: [...]}` with `--json`, else one item a line.
pub fn print_list(common: &Common, key: &str, items: &[String]) {
    if common.json {
        print_json(&json!({ key: items }));
    } else {
        for i in items {
            println!("{i}");
        }
    }
}

/// Prints what a copy did: `{verb} {dest}@{digest}` and the counts.
pub fn print_report(common: &Common, verb: &str, dest: &str, r: &CopyReport) {
    if common.json {
        print_json(&serde_json::to_value(r).expect("report serializes"));
    } else {
        let d = r
            .digest
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        println!(
            "{verb} {dest}@{d} ({} manifests; blobs: {} copied, {} mounted, {} already there; {} bytes)",
            r.manifests, r.blobs_copied, r.blobs_mounted, r.blobs_skipped, r.bytes_copied
        );
    }
}
