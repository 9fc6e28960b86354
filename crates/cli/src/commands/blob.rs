//! `berth blob`: one blob, verified, to a file or standard output.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use berth_client::BlobStream;
use futures::StreamExt as _;

use crate::args::BlobArgs;
use crate::connect::client;
use crate::exit::Failure;
use crate::parse::parse_ref;
use crate::progress;

/// Downloads a blob (REPO@DIGEST).
pub async fn blob(a: BlobArgs) -> Result<(), Failure> {
    let r = parse_ref(&a.reference)?;
    let digest = r
        .digest
        .clone()
        .ok_or_else(|| Failure::usage("berth blob needs REPO@DIGEST"))?;
    let c = client(&r.registry, &a.common, None)?;
    let size = c.blob_size(&r.repository, &digest).await?;
    let bar = progress::Bars::single(&digest.hex()[..12], size);
    let stream = c.blob_stream(&r.repository, &digest, Some(size)).await?;
    match a.output {
        Some(path) => to_file(stream, &path, bar).await,
        None => to_stdout(stream).await,
    }
}

/// Writes to `path.partial` and renames it once the digest is checked, so that `path` never
/// holds a partial or corrupt blob.
async fn to_file(
    mut stream: BlobStream,
    path: &Path,
    bar: Option<indicatif::ProgressBar>,
) -> Result<(), Failure> {
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".partial");
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| Failure::other(anyhow!("cannot create {}: {e}", tmp.display())))?;
    let mut res = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => {
                if let Err(e) = f.write_all(&b) {
                    res = Err(Failure::other(anyhow!("writing {}: {e}", tmp.display())));
                    break;
                }
                if let Some(bar) = &bar {
                    bar.inc(b.len() as u64);
                }
            }
            Err(e) => {
                res = Err(Failure::from(e));
                break;
            }
        }
    }
    drop(f);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return res;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| Failure::other(anyhow!("renaming to {}: {e}", path.display())))?;
    Ok(())
}

/// Bytes reach stdout as they arrive; a mismatch at the end still fails the command.
async fn to_stdout(mut stream: BlobStream) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let b = chunk?;
        out.write_all(&b)
            .map_err(|e| Failure::other(anyhow!("writing to stdout: {e}")))?;
    }
    let _ = out.flush();
    Ok(())
}
