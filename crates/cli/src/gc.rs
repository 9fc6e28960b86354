//! `berth gc`: one garbage collection on the server's storage, from the command line (with the
//! server running or stopped, or on a folder CNCF Distribution wrote).

use std::sync::Arc;

use anyhow::Context as _;
use berth_registry::{GcOptions, GcReport, Index, IndexConfig, Registry, RegistryConfig};

use crate::args::GcArgs;
use crate::config::DatabaseSettings;
use crate::exit::Failure;
use crate::serve;

/// Runs `berth gc`.
pub async fn run(args: GcArgs) -> Result<(), Failure> {
    let (settings, storage) = serve::offline(args.config.as_deref(), args.root.clone()).await?;
    let policies = match &args.policy_file {
        Some(f) => Arc::new(crate::config::load_policies(f).map_err(Failure::other)?),
        None => settings.policies.clone(),
    };
    if args.policies && policies.retention.is_empty() {
        let why = match args
            .policy_file
            .as_ref()
            .or(settings.policies_file.as_ref())
        {
            Some(f) => format!("the policy file {} has no retention rule", f.display()),
            None => "no policy file is configured".to_owned(),
        };
        return Err(Failure::usage(format!("--policies: {why}")).with_hint(
            "write retention rules in a policy file and name it with --policy-file or config.yml's `policies`",
        ));
    }
    let opts = GcOptions {
        grace: args.grace.unwrap_or(settings.gc.grace),
        delete_untagged: args.delete_untagged || settings.gc.delete_untagged,
        dry_run: args.dry_run,
        rate: settings.gc.rate,
        policies: args.policies,
    };
    let mut registry = Registry::new(
        storage,
        RegistryConfig {
            delete_enabled: true,
            gc_grace: opts.grace,
            policies,
            ..Default::default()
        },
    );
    // Manifests deleted leave the index first, as a DELETE does; an index file that does not
    // exist yet is not created for this.
    let index = match &settings.database {
        DatabaseSettings::Off { .. } => None,
        DatabaseSettings::Embedded(path) if !path.exists() => None,
        DatabaseSettings::Embedded(path) => Some(IndexConfig::Embedded { path: path.clone() }),
        DatabaseSettings::Postgres(dsn) => Some(IndexConfig::Postgres { dsn: dsn.clone() }),
    };
    let index = match index {
        Some(cfg) => Some(
            Index::open(&cfg)
                .await
                .context("cannot open the metadata index")
                .map_err(serve::failure)?,
        ),
        None => None,
    };
    if let Some(ix) = &index {
        registry = registry
            .with_index(ix.clone())
            .await
            .map_err(Failure::other)?;
    }
    let report = registry
        .collect_garbage(&opts)
        .await
        .context("garbage collection stopped")
        .map_err(|e| {
            Failure::other(e).with_hint(
                "nothing half-deleted is visible; run `berth gc` again once storage answers",
            )
        })?;
    if let Some(ix) = index {
        ix.close().await;
    }
    print_report(&report, &opts);
    Ok(())
}

fn print_report(r: &GcReport, opts: &GcOptions) {
    let verb = if opts.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for t in &r.tags_deleted {
        println!(
            "{verb} tag {}:{} ({}): {}",
            t.repository, t.tag, t.digest, t.reason
        );
    }
    for (repo, d) in &r.manifests_deleted {
        println!("{verb} manifest {repo}@{d}");
    }
    for (d, size) in &r.blobs_deleted {
        println!("{verb} blob {d} ({size} bytes)");
    }
    if opts.policies {
        let done = if opts.dry_run {
            "would be deleted"
        } else {
            "deleted"
        };
        println!("{} tags {done} by retention", r.tags_deleted.len());
    }
    println!(
        "{} repositories, {} manifests kept; {} of {} blobs {verb}, {} bytes ({}); {} manifests {verb}",
        r.repositories,
        r.manifests_kept,
        r.blobs_deleted.len(),
        r.blobs_seen,
        r.bytes_freed(),
        human_bytes(r.bytes_freed()),
        r.manifests_deleted.len(),
    );
    if r.kept_in_grace > 0 {
        println!(
            "{} unreferenced blobs kept: written or used within the last {} (--grace)",
            r.kept_in_grace,
            humantime::format_duration(opts.grace)
        );
    }
    if r.restored > 0 {
        println!(
            "{} blobs kept because a push referenced them during the run",
            r.restored
        );
    }
    if r.recovered > 0 {
        println!(
            "{} blobs an interrupted earlier run had moved aside were put back",
            r.recovered
        );
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
