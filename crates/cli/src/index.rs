//! `berth index rebuild [--check]`: the metadata index compared with storage and brought level.

use anyhow::Context as _;
use berth_registry::{Index, IndexConfig, IndexError, Registry, RegistryConfig};

use crate::args::{IndexArgs, IndexCommand, IndexRebuildArgs};
use crate::config::DatabaseSettings;
use crate::exit::Failure;
use crate::serve;

/// Runs a `berth index` subcommand.
pub async fn run(args: IndexArgs) -> Result<(), Failure> {
    match args.command {
        IndexCommand::Rebuild(a) => rebuild(a).await,
    }
}

async fn rebuild(args: IndexRebuildArgs) -> Result<(), Failure> {
    let (settings, storage) = serve::offline(args.config.as_deref(), args.root.clone()).await?;
    let cfg = match &settings.database {
        DatabaseSettings::Off { .. } => {
            return Err(Failure::usage(
                "this configuration keeps no metadata index: set database.dsn or database.path (or leave database.enabled on)",
            ));
        }
        DatabaseSettings::Embedded(path) => IndexConfig::Embedded { path: path.clone() },
        DatabaseSettings::Postgres(dsn) => IndexConfig::Postgres { dsn: dsn.clone() },
    };
    let index = match Index::open(&cfg).await {
        Ok(i) => i,
        Err(e @ (IndexError::Corrupt { .. } | IndexError::Foreign { .. })) if !args.check => {
            let IndexConfig::Embedded { path: file } = &cfg else {
                return Err(serve::failure(anyhow::Error::new(e)));
            };
            let aside = set_aside(file).map_err(Failure::other)?;
            eprintln!("{e}: moved it to {}; building a new index", aside.display());
            Index::open(&cfg)
                .await
                .context("cannot create a new index file")
                .map_err(serve::failure)?
        }
        Err(e) => {
            return Err(serve::failure(
                anyhow::Error::new(e).context("cannot open the metadata index"),
            ));
        }
    };
    let registry = Registry::new(storage, RegistryConfig::default())
        .with_index(index.clone())
        .await
        .map_err(Failure::other)?;
    let report = registry
        .reconcile_index(args.check)
        .await
        .context("cannot reconcile the index with storage")
        .map_err(Failure::other)?;
    index.close().await;
    println!(
        "storage holds {} repositories, {} manifests, {} tags",
        report.repositories, report.manifests, report.tags
    );
    for d in &report.differences {
        println!("{d}");
    }
    for r in &report.extra_repositories {
        println!("{r}: indexed but not in storage");
    }
    let differing = report.differences.len() + report.extra_repositories.len();
    if report.is_clean() {
        println!("the index agrees with storage");
        Ok(())
    } else if args.check {
        Err(Failure::other(anyhow::anyhow!(
            "the index differs from storage in {differing} repositories"
        ))
        .with_hint("run `berth index rebuild` with the same config to bring it level"))
    } else {
        println!("the index was brought level with storage ({differing} repositories changed)");
        Ok(())
    }
}

/// Moves a damaged index file (and SQLite's `-wal` and `-shm` beside it) out of the way.
fn set_aside(file: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = file.with_extension(format!("damaged-{stamp}"));
    std::fs::rename(file, &aside)
        .with_context(|| format!("cannot move the damaged index file {}", file.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = file.as_os_str().to_owned();
        side.push(suffix);
        let mut side_aside = aside.as_os_str().to_owned();
        side_aside.push(suffix);
        // Absent unless SQLite left them; they belong to the file set aside.
        let _ = std::fs::rename(
            std::path::PathBuf::from(side),
            std::path::PathBuf::from(side_aside),
        );
    }
    Ok(aside)
}
