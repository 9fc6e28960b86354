//! Registry client subcommands: inspect (catalog, search, tags, manifest, config, digest, blob,
//! size, referrers), copy (cp, pull, push, tag), delete (rm, rm-repo), and credentials (login,
//! logout). All of them are thin layers over the `berth-client` library.

#[path = "client/progress.rs"]
mod progress;

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::anyhow;
use berth_client::{
    Client, ClientOptions, CopyOptions, CopyReport, Credentials, Digest, Error, ListOptions,
    Manifest, OciLayout, Platform, Platforms, RegistryRepo, UploadMode,
};
use berth_oci::{Reference, validate_tag};
use clap::{Args, Subcommand};
use futures::StreamExt as _;
use serde_json::json;

/// Exit codes, shown in every client command's help.
const EXIT_CODES: &str = "Exit codes: 0 ok, 1 other failure (corrupt content, registry error), 2 usage \
(bad arguments or reference), 3 not found, 4 authentication or authorization, 5 registry unreachable or TLS failure.";

/// Exit code: any other failure.
pub const EXIT_OTHER: u8 = 1;
/// Exit code: bad arguments or references.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the repository, tag, manifest or blob does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: credentials refused or missing, or not allowed.
pub const EXIT_AUTH: u8 = 4;
/// Exit code: the registry could not be reached, or TLS failed.
pub const EXIT_NETWORK: u8 = 5;

/// Options every client command takes.
#[derive(Args, Clone, Debug, Default)]
pub struct Common {
    /// Print machine-readable JSON.
    #[arg(long, global = false)]
    pub(crate) json: bool,
    /// Accept plain HTTP and unverified TLS certificates for the registries named in this command.
    #[arg(long)]
    insecure: bool,
    /// Always use plain HTTP.
    #[arg(long)]
    plain_http: bool,
    /// Credentials as USER:PASS (overrides Docker's config.json and BERTH_USERNAME/BERTH_PASSWORD).
    #[arg(long, value_name = "USER:PASS", conflicts_with = "username")]
    creds: Option<String>,
    /// Username; the password is read from standard input.
    #[arg(long)]
    username: Option<String>,
    /// Extra CA certificate file (PEM) to trust; may be repeated.
    #[arg(long = "ca-file", value_name = "FILE")]
    ca_files: Vec<PathBuf>,
    /// Seconds allowed to connect.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    connect_timeout: u64,
    /// Seconds allowed between two reads.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    read_timeout: u64,
    /// Blob transfers at once per registry host.
    #[arg(long, default_value_t = 4, value_name = "N")]
    max_transfers: usize,
    /// Upload blobs in chunks (PATCH requests) instead of one streaming request.
    #[arg(long)]
    pub(crate) chunked: bool,
    /// Chunk size in bytes for --chunked (suffixes K, M accepted).
    #[arg(long, default_value = "4M", value_name = "BYTES")]
    pub(crate) chunk_size: String,
}

/// Platform choice for commands that copy.
#[derive(Args, Clone, Debug, Default)]
pub struct PlatformArgs {
    /// Copy only this platform (os/arch[/variant]); repeat for a subset (a new index is written).
    #[arg(long, value_name = "OS/ARCH")]
    platform: Vec<String>,
    /// Copy every platform of an index, keeping its digest (the default).
    #[arg(long, conflicts_with = "platform")]
    all_platforms: bool,
}

/// Client subcommands.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Check that a registry answers the /v2/ API.
    #[command(after_help = EXIT_CODES)]
    Ping {
        /// Registry host, such as 127.0.0.1:5000.
        host: String,
        #[command(flatten)]
        common: Common,
    },
    /// List the repositories of a registry.
    #[command(after_help = EXIT_CODES)]
    Catalog {
        /// Registry host, such as 127.0.0.1:5000.
        host: String,
        /// Stop after N repositories.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// List repositories whose name matches PATTERN (a glob with * and ?, or a substring).
    #[command(after_help = EXIT_CODES)]
    Search {
        /// Registry host.
        host: String,
        /// Pattern.
        pattern: String,
        #[command(flatten)]
        common: Common,
    },
    /// List the tags of a repository.
    #[command(after_help = EXIT_CODES)]
    Tags {
        /// Repository, such as 127.0.0.1:5000/team/app.
        repo: String,
        /// Also resolve each tag's digest (HEAD requests).
        #[arg(long)]
        digests: bool,
        /// Stop after N tags.
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this tag.
        #[arg(long)]
        last: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print a manifest or index, byte for byte.
    #[command(after_help = EXIT_CODES)]
    Manifest {
        /// Image reference (tag or digest).
        reference: String,
        /// From an index, print this platform's manifest.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print an image's config blob.
    #[command(after_help = EXIT_CODES)]
    Config {
        /// Image reference.
        reference: String,
        /// Platform to pick from an index (default: linux/amd64).
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the digest a reference resolves to (HEAD, no download).
    #[command(after_help = EXIT_CODES)]
    Digest {
        /// Image reference.
        reference: String,
        #[command(flatten)]
        common: Common,
    },
    /// Download a blob (verified) to a file or standard output.
    #[command(after_help = EXIT_CODES)]
    Blob {
        /// REPO@DIGEST.
        reference: String,
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Print an image's size: its config plus its layers (per platform for an index).
    #[command(after_help = EXIT_CODES)]
    Size {
        /// Image reference.
        reference: String,
        /// Only this platform of an index.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Tag a remote image: `tag SRC NEWTAG` or `tag SRC DEST` (same registry; other repositories
    /// get the layers by cross-repository mount). The manifest's bytes and media type are kept.
    #[command(after_help = EXIT_CODES)]
    Tag {
        /// Source image reference.
        src: String,
        /// A new tag in the same repository, or a full destination reference.
        dest: String,
        #[command(flatten)]
        common: Common,
    },
    /// Copy an image (or whole index) between repositories or registries, keeping digests.
    #[command(after_help = EXIT_CODES)]
    Cp {
        /// Source image reference.
        src: String,
        /// Destination image reference (without a tag, the source's tag is used).
        dest: String,
        #[command(flatten)]
        platforms: PlatformArgs,
        /// Credentials (USER:PASS) for the source registry only.
        #[arg(long, value_name = "USER:PASS")]
        src_creds: Option<String>,
        /// Credentials (USER:PASS) for the destination registry only.
        #[arg(long, value_name = "USER:PASS")]
        dest_creds: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a tag (only that tag, where the registry allows it) or a manifest by digest.
    #[command(after_help = EXIT_CODES)]
    Rm {
        /// REPO:TAG or REPO@DIGEST.
        reference: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete every manifest of a repository.
    #[command(name = "rm-repo", after_help = EXIT_CODES)]
    RmRepo {
        /// Repository.
        repo: String,
        /// Really delete.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Download an image into an OCI image layout directory.
    #[command(after_help = EXIT_CODES)]
    Pull {
        /// Image reference.
        reference: String,
        /// Layout directory (created if needed).
        dir: PathBuf,
        /// Name in the layout's index.json (default: the tag, or "latest").
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        platforms: PlatformArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Upload an image from an OCI image layout directory.
    #[command(after_help = EXIT_CODES)]
    Push {
        /// Layout directory.
        dir: PathBuf,
        /// Destination image reference.
        reference: String,
        /// Which image of the layout (its org.opencontainers.image.ref.name); default: the
        /// reference's tag if the layout has it, else the layout's only image.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List the artifacts that refer to an image (referrers API, or the tag schema fallback).
    #[command(after_help = EXIT_CODES)]
    Referrers {
        /// Image reference.
        reference: String,
        /// Only this artifact type.
        #[arg(long)]
        artifact_type: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Check credentials for a registry and save them in Docker's config.json.
    #[command(after_help = EXIT_CODES)]
    Login {
        /// Registry host.
        host: String,
        #[command(flatten)]
        common: Common,
    },
    /// Remove saved credentials for a registry from Docker's config.json.
    #[command(after_help = EXIT_CODES)]
    Logout {
        /// Registry host.
        host: String,
        #[command(flatten)]
        common: Common,
    },
}

pub(crate) type CmdResult = Result<(), (u8, anyhow::Error)>;

pub(crate) fn usage(msg: impl std::fmt::Display) -> (u8, anyhow::Error) {
    (EXIT_USAGE, anyhow!("{msg}"))
}

/// Maps a library error to an exit code and a one-line message that says what to do.
pub(crate) fn fail(context: &str, e: Error) -> (u8, anyhow::Error) {
    let code = match &e {
        Error::NotFound { .. } => EXIT_NOT_FOUND,
        Error::Authentication { .. } | Error::Authorization { .. } => EXIT_AUTH,
        Error::Unreachable { .. } | Error::Tls { .. } => EXIT_NETWORK,
        Error::Reference(_) | Error::Invalid(_) => EXIT_USAGE,
        _ => EXIT_OTHER,
    };
    let hint = e
        .hint()
        .map(|h| format!(" (hint: {h})"))
        .unwrap_or_default();
    let prefix = if context.is_empty() {
        String::new()
    } else {
        format!("{context}: ")
    };
    (code, anyhow!("{prefix}{e}{hint}"))
}

pub(crate) fn parse_ref(s: &str) -> Result<Reference, (u8, anyhow::Error)> {
    s.parse::<Reference>()
        .map_err(|e| usage(format!("{e} (in {s:?})")))
}

/// A registry host given alone (catalog, login): `host[:port]`, optionally with a scheme.
fn parse_host(s: &str) -> Result<String, (u8, anyhow::Error)> {
    let h = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if h.is_empty() || h.contains('/') || h.contains(char::is_whitespace) {
        return Err(usage(format!(
            "{s:?} is not a registry host: expected HOST[:PORT], such as 127.0.0.1:5000"
        )));
    }
    Ok(h.to_owned())
}

pub(crate) fn parse_size(s: &str) -> Result<usize, (u8, anyhow::Error)> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1024),
        Some('M' | 'm') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n * mult)
        .ok_or_else(|| {
            usage(format!(
                "bad size {s:?}: expected bytes, such as 4M or 65536"
            ))
        })
}

/// The password read from stdin for `--username`, read once per process.
fn stdin_password() -> Result<String, (u8, anyhow::Error)> {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    if let Some(p) = PASSWORD.get() {
        return Ok(p.clone());
    }
    if std::io::stdin().is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| usage(format!("cannot read the password from stdin: {e}")))?;
    let p = s.lines().next().unwrap_or("").to_owned();
    if p.is_empty() {
        return Err(usage("--username needs the password on standard input"));
    }
    Ok(PASSWORD.get_or_init(|| p).clone())
}

fn credentials(
    common: &Common,
    override_creds: Option<&str>,
) -> Result<Option<Credentials>, (u8, anyhow::Error)> {
    if let Some(c) = override_creds.or(common.creds.as_deref()) {
        return Credentials::parse_user_pass(c)
            .map(Some)
            .map_err(|e| usage(e.to_string()));
    }
    if let Some(u) = &common.username {
        return Ok(Some(Credentials::basic(u.clone(), stdin_password()?)));
    }
    Ok(None)
}

pub(crate) fn client(
    registry: &str,
    common: &Common,
    override_creds: Option<&str>,
) -> Result<Client, (u8, anyhow::Error)> {
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(common.connect_timeout.max(1)),
        read_timeout: Duration::from_secs(common.read_timeout.max(1)),
        insecure_registries: if common.insecure {
            vec![registry.to_owned()]
        } else {
            vec![]
        },
        skip_tls_verify: common.insecure,
        plain_http: common.plain_http,
        ca_files: common.ca_files.clone(),
        credentials: credentials(common, override_creds)?,
        upload_mode: if common.chunked {
            UploadMode::Chunked
        } else {
            UploadMode::Streaming
        },
        chunk_size: parse_size(&common.chunk_size)?,
        max_concurrent_transfers: common.max_transfers.max(1),
        ..ClientOptions::default()
    };
    Client::new(registry, opts).map_err(|e| fail("", e))
}

fn platforms(args: &PlatformArgs) -> Result<Platforms, (u8, anyhow::Error)> {
    let list: Vec<Platform> = args
        .platform
        .iter()
        .flat_map(|p| p.split(','))
        .map(|p| p.parse::<Platform>().map_err(|e| usage(e.to_string())))
        .collect::<Result<_, _>>()?;
    Ok(match list.len() {
        0 => Platforms::All,
        1 => Platforms::One(list.into_iter().next().expect("one")),
        _ => Platforms::Some(list),
    })
}

pub(crate) fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
}

fn print_report(common: &Common, verb: &str, dest: &str, r: &CopyReport) {
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

/// Whether the last path component of a reference string names a tag or digest explicitly.
fn has_explicit_tag(s: &str) -> bool {
    let last = s.rsplit('/').next().unwrap_or(s);
    last.contains(':') || last.contains('@')
}

async fn fetch_for_platform(
    c: &Client,
    r: &Reference,
    platform: Option<&str>,
) -> Result<Manifest, (u8, anyhow::Error)> {
    let m = c
        .get_manifest(&r.repository, &r.reference_str())
        .await
        .map_err(|e| fail("", e))?;
    match platform {
        Some(p) => {
            let p: Platform = p
                .parse()
                .map_err(|e: berth_oci::PlatformError| usage(e.to_string()))?;
            c.resolve_platform(&r.repository, m, &p)
                .await
                .map_err(|e| fail("", e))
        }
        None => Ok(m),
    }
}

fn image_size(m: &Manifest) -> Result<(u64, u64, usize), (u8, anyhow::Error)> {
    let p = m.parse().map_err(|e| fail("", e))?;
    let config = p.config.map(|c| c.size).unwrap_or(0);
    let layers: u64 = p.layers.iter().map(|l| l.size).sum();
    Ok((config, layers, p.layers.len()))
}

/// Runs a client subcommand; the error carries the process exit code.
pub async fn run(cmd: ClientCommand) -> CmdResult {
    match cmd {
        ClientCommand::Ping { host, common } => {
            let host = parse_host(&host)?;
            let c = client(&host, &common, None)?;
            c.ping().await.map_err(|e| fail("", e))?;
            if common.json {
                print_json(
                    &json!({"registry": host, "ok": true, "url": c.base_url().await.unwrap_or_default()}),
                );
            } else {
                println!("{host}: OK");
            }
            Ok(())
        }
        ClientCommand::Catalog {
            host,
            limit,
            common,
        } => {
            let host = parse_host(&host)?;
            let c = client(&host, &common, None)?;
            let repos = c
                .catalog(Some(&ListOptions {
                    limit,
                    ..Default::default()
                }))
                .await
                .map_err(|e| fail("", e))?;
            print_list(&common, "repositories", &repos);
            Ok(())
        }
        ClientCommand::Search {
            host,
            pattern,
            common,
        } => {
            let host = parse_host(&host)?;
            let c = client(&host, &common, None)?;
            let repos = c.search(&pattern).await.map_err(|e| fail("", e))?;
            print_list(&common, "repositories", &repos);
            Ok(())
        }
        ClientCommand::Tags {
            repo,
            digests,
            limit,
            last,
            common,
        } => {
            let r = parse_ref(&repo)?;
            let c = client(&r.registry, &common, None)?;
            let opts = ListOptions {
                limit,
                last,
                page_size: None,
            };
            let tags = c
                .tags(&r.repository, Some(&opts))
                .await
                .map_err(|e| fail("", e))?;
            if digests {
                let pairs = c
                    .tag_digests(&r.repository, &tags)
                    .await
                    .map_err(|e| fail("", e))?;
                if common.json {
                    let list: Vec<_> = pairs
                        .iter()
                        .map(|(t, d)| json!({"tag": t, "digest": d}))
                        .collect();
                    print_json(&json!({"name": r.repository, "tags": list}));
                } else {
                    for (t, d) in pairs {
                        println!("{t}\t{d}");
                    }
                }
            } else if common.json {
                print_json(&json!({"name": r.repository, "tags": tags}));
            } else {
                for t in tags {
                    println!("{t}");
                }
            }
            Ok(())
        }
        ClientCommand::Manifest {
            reference,
            platform,
            common,
        } => {
            let r = parse_ref(&reference)?;
            let c = client(&r.registry, &common, None)?;
            let m = fetch_for_platform(&c, &r, platform.as_deref()).await?;
            if common.json {
                let body: serde_json::Value =
                    serde_json::from_slice(&m.bytes).unwrap_or(serde_json::Value::Null);
                print_json(
                    &json!({"digest": m.digest, "mediaType": m.media_type, "size": m.size(), "manifest": body}),
                );
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&m.bytes);
                if !m.bytes.ends_with(b"\n") {
                    let _ = out.write_all(b"\n");
                }
            }
            Ok(())
        }
        ClientCommand::Config {
            reference,
            platform,
            common,
        } => {
            let r = parse_ref(&reference)?;
            let c = client(&r.registry, &common, None)?;
            let mut m = fetch_for_platform(&c, &r, platform.as_deref()).await?;
            if m.is_index() {
                let p: Platform = "linux/amd64".parse().expect("valid platform");
                m = c
                    .resolve_platform(&r.repository, m, &p)
                    .await
                    .map_err(|e| fail("pick one with --platform", e))?;
            }
            let config = c
                .get_config(&r.repository, &m)
                .await
                .map_err(|e| fail("", e))?;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&config);
            let _ = out.write_all(b"\n");
            Ok(())
        }
        ClientCommand::Digest { reference, common } => {
            let r = parse_ref(&reference)?;
            let c = client(&r.registry, &common, None)?;
            let info = c
                .head_manifest(&r.repository, &r.reference_str())
                .await
                .map_err(|e| fail("", e))?;
            if common.json {
                print_json(
                    &json!({"digest": info.digest, "mediaType": info.media_type, "size": info.size}),
                );
            } else {
                println!("{}", info.digest);
            }
            Ok(())
        }
        ClientCommand::Blob {
            reference,
            output,
            common,
        } => {
            let r = parse_ref(&reference)?;
            let digest = r
                .digest
                .clone()
                .ok_or_else(|| usage("berth blob needs REPO@DIGEST"))?;
            let c = client(&r.registry, &common, None)?;
            blob(&c, &r.repository, &digest, output).await
        }
        ClientCommand::Size {
            reference,
            platform,
            common,
        } => {
            let r = parse_ref(&reference)?;
            let c = client(&r.registry, &common, None)?;
            let m = fetch_for_platform(&c, &r, platform.as_deref()).await?;
            let mut rows = Vec::new();
            if m.is_index() {
                let parsed = m.parse().map_err(|e| fail("", e))?;
                for entry in parsed.manifests {
                    let child = c
                        .get_manifest(&r.repository, &entry.digest.to_string())
                        .await
                        .map_err(|e| fail("", e))?;
                    if child.is_index() {
                        continue;
                    }
                    let plat = Platform::of(entry.platform.as_ref())
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unknown".into());
                    rows.push((plat, child.digest.clone(), image_size(&child)?));
                }
            } else {
                rows.push((
                    platform.clone().unwrap_or_default(),
                    m.digest.clone(),
                    image_size(&m)?,
                ));
            }
            if common.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(p, d, (cfg, layers, n))| {
                        json!({"platform": p, "digest": d, "config": cfg, "layers": layers, "layerCount": n, "total": cfg + layers})
                    })
                    .collect();
                print_json(&json!({"reference": r.to_string(), "images": list}));
            } else {
                for (p, d, (cfg, layers, _)) in rows {
                    let label = if p.is_empty() {
                        String::new()
                    } else {
                        format!("{p}\t")
                    };
                    println!("{label}{}\t{d}", cfg + layers);
                }
            }
            Ok(())
        }
        ClientCommand::Tag { src, dest, common } => tag(&src, &dest, &common).await,
        ClientCommand::Cp {
            src,
            dest,
            platforms: pa,
            src_creds,
            dest_creds,
            common,
        } => {
            let s = parse_ref(&src)?;
            let d = parse_ref(&dest)?;
            let dst_reference = if has_explicit_tag(&dest) {
                d.reference_str()
            } else {
                s.tag.clone().unwrap_or_else(|| "latest".into())
            };
            let sc = client(&s.registry, &common, src_creds.as_deref())?;
            let dc = if d.registry == s.registry && src_creds == dest_creds {
                sc.clone()
            } else {
                client(&d.registry, &common, dest_creds.as_deref())?
            };
            let opts = CopyOptions {
                platforms: platforms(&pa)?,
                concurrency: common.max_transfers.max(1),
                reporter: progress::reporter(),
                ..CopyOptions::default()
            };
            let report = berth_client::copy(
                &RegistryRepo::new(sc, s.repository.clone()),
                &s.reference_str(),
                &RegistryRepo::new(dc, d.repository.clone()),
                &dst_reference,
                &opts,
            )
            .await
            .map_err(|e| fail(&format!("copy {s} to {}", d.name()), e))?;
            print_report(&common, "Copied to", &d.name(), &report);
            Ok(())
        }
        ClientCommand::Rm { reference, common } => {
            let r = parse_ref(&reference)?;
            let c = client(&r.registry, &common, None)?;
            match &r.digest {
                Some(d) => c
                    .delete_manifest(&r.repository, d)
                    .await
                    .map_err(|e| fail("", e))?,
                None => {
                    let t = r.tag.clone().unwrap_or_else(|| "latest".into());
                    c.delete_tag(&r.repository, &t)
                        .await
                        .map_err(|e| fail("", e))?;
                }
            }
            if common.json {
                print_json(&json!({"deleted": r.to_string()}));
            } else {
                println!("Deleted {r}");
            }
            Ok(())
        }
        ClientCommand::RmRepo { repo, yes, common } => {
            let r = parse_ref(&repo)?;
            if !yes {
                return Err(usage(format!(
                    "refusing to delete every manifest of {} without --yes",
                    r.name()
                )));
            }
            let c = client(&r.registry, &common, None)?;
            let tags = c.tags(&r.repository, None).await.map_err(|e| fail("", e))?;
            let pairs = c
                .tag_digests(&r.repository, &tags)
                .await
                .map_err(|e| fail("", e))?;
            let mut digests: Vec<Digest> = pairs.into_iter().map(|(_, d)| d).collect();
            digests.sort();
            digests.dedup();
            for d in &digests {
                match c.delete_manifest(&r.repository, d).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(fail(&format!("deleting {}@{d}", r.name()), e)),
                }
            }
            if common.json {
                print_json(
                    &json!({"repository": r.name(), "deletedManifests": digests, "tags": tags}),
                );
            } else {
                println!(
                    "Deleted {} manifests ({} tags) from {}",
                    digests.len(),
                    tags.len(),
                    r.name()
                );
            }
            Ok(())
        }
        ClientCommand::Pull {
            reference,
            dir,
            name,
            platforms: pa,
            common,
        } => {
            let r = parse_ref(&reference)?;
            let c = client(&r.registry, &common, None)?;
            let layout = OciLayout::create(&dir).await.map_err(|e| fail("", e))?;
            let name = name
                .or_else(|| r.tag.clone())
                .unwrap_or_else(|| "latest".into());
            let opts = CopyOptions {
                platforms: platforms(&pa)?,
                concurrency: common.max_transfers.max(1),
                reporter: progress::reporter(),
                ..CopyOptions::default()
            };
            let report = berth_client::copy(
                &RegistryRepo::new(c, r.repository.clone()),
                &r.reference_str(),
                &layout,
                &name,
                &opts,
            )
            .await
            .map_err(|e| fail(&format!("pull {r}"), e))?;
            print_report(
                &common,
                "Pulled into",
                &format!("{}:{name}", dir.display()),
                &report,
            );
            Ok(())
        }
        ClientCommand::Push {
            dir,
            reference,
            name,
            common,
        } => {
            let r = parse_ref(&reference)?;
            let layout = OciLayout::open(&dir).await.map_err(|e| fail("", e))?;
            let names = layout.names().await.map_err(|e| fail("", e))?;
            let src_name = match name {
                Some(n) => n,
                None => match &r.tag {
                    Some(t) if has_explicit_tag(&reference) && names.contains(t) => t.clone(),
                    _ => String::new(),
                },
            };
            let c = client(&r.registry, &common, None)?;
            let opts = CopyOptions {
                concurrency: common.max_transfers.max(1),
                reporter: progress::reporter(),
                ..CopyOptions::default()
            };
            let report = berth_client::copy(
                &layout,
                &src_name,
                &RegistryRepo::new(c, r.repository.clone()),
                &r.reference_str(),
                &opts,
            )
            .await
            .map_err(|e| fail(&format!("push {}", dir.display()), e))?;
            print_report(&common, "Pushed to", &r.name(), &report);
            Ok(())
        }
        ClientCommand::Referrers {
            reference,
            artifact_type,
            common,
        } => {
            let r = parse_ref(&reference)?;
            let c = client(&r.registry, &common, None)?;
            let digest = match &r.digest {
                Some(d) => d.clone(),
                None => c
                    .digest(&r.repository, &r.reference_str())
                    .await
                    .map_err(|e| fail("", e))?,
            };
            let list = c
                .referrers(&r.repository, &digest, artifact_type.as_deref())
                .await
                .map_err(|e| fail("", e))?;
            if common.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|d| json!({"digest": d.digest, "mediaType": d.media_type, "size": d.size, "artifactType": d.artifact_type}))
                    .collect();
                print_json(&json!({"subject": digest, "referrers": v}));
            } else {
                for d in list {
                    println!("{}\t{}", d.digest, d.artifact_type.unwrap_or_default());
                }
            }
            Ok(())
        }
        ClientCommand::Login { host, common } => {
            let host = parse_host(&host)?;
            let creds = credentials(&common, None)?
                .ok_or_else(|| usage("berth login needs --creds USER:PASS or --username USER with the password on stdin"))?;
            let opts = ClientOptions {
                credentials: Some(creds.clone()),
                env_credentials: false,
                docker_config: false,
                insecure_registries: if common.insecure {
                    vec![host.clone()]
                } else {
                    vec![]
                },
                skip_tls_verify: common.insecure,
                plain_http: common.plain_http,
                ca_files: common.ca_files.clone(),
                ..ClientOptions::default()
            };
            let c = Client::new(&host, opts).map_err(|e| fail("", e))?;
            c.check_login()
                .await
                .map_err(|e| fail(&format!("login to {host}"), e))?;
            let saved = berth_client::credentials::store_docker_login(None, &host, &creds)
                .map_err(|e| fail("", e))?;
            if common.json {
                print_json(&json!({"registry": host, "savedTo": saved}));
            } else {
                println!("Login succeeded; credentials saved to {saved}");
            }
            Ok(())
        }
        ClientCommand::Logout { host, common } => {
            let host = parse_host(&host)?;
            let removed = berth_client::credentials::remove_docker_login(None, &host)
                .map_err(|e| fail("", e))?;
            if common.json {
                print_json(&json!({"registry": host, "removed": removed}));
            } else if removed {
                println!("Removed credentials for {host}");
            } else {
                println!("No credentials were saved for {host}");
            }
            Ok(())
        }
    }
}

fn print_list(common: &Common, key: &str, items: &[String]) {
    if common.json {
        print_json(&json!({ key: items }));
    } else {
        for i in items {
            println!("{i}");
        }
    }
}

async fn blob(c: &Client, repo: &str, digest: &Digest, output: Option<PathBuf>) -> CmdResult {
    let size = c.blob_size(repo, digest).await.map_err(|e| fail("", e))?;
    let bar = progress::Bars::single(&digest.hex()[..12], size);
    let mut stream = c
        .blob_stream(repo, digest, Some(size))
        .await
        .map_err(|e| fail("", e))?;
    match output {
        Some(path) => {
            let mut tmp_name = path
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            tmp_name.push(".partial");
            let tmp = path.with_file_name(tmp_name);
            let mut f = std::fs::File::create(&tmp)
                .map_err(|e| (EXIT_OTHER, anyhow!("cannot create {}: {e}", tmp.display())))?;
            let mut res = Ok(());
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(b) => {
                        if let Err(e) = f.write_all(&b) {
                            res = Err((EXIT_OTHER, anyhow!("writing {}: {e}", tmp.display())));
                            break;
                        }
                        if let Some(bar) = &bar {
                            bar.inc(b.len() as u64);
                        }
                    }
                    Err(e) => {
                        res = Err(fail("", e));
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
            std::fs::rename(&tmp, &path)
                .map_err(|e| (EXIT_OTHER, anyhow!("renaming to {}: {e}", path.display())))?;
            Ok(())
        }
        None => {
            // Bytes reach stdout as they arrive; a mismatch at the end still fails the command.
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                let b = chunk.map_err(|e| fail("", e))?;
                out.write_all(&b)
                    .map_err(|e| (EXIT_OTHER, anyhow!("writing to stdout: {e}")))?;
            }
            let _ = out.flush();
            Ok(())
        }
    }
}

async fn tag(src: &str, dest: &str, common: &Common) -> CmdResult {
    let s = parse_ref(src)?;
    let d = if !dest.contains('/')
        && !dest.contains(':')
        && !dest.contains('@')
        && validate_tag(dest).is_ok()
    {
        Reference::with_tag(&s.registry, &s.repository, dest)
    } else {
        parse_ref(dest)?
    };
    if d.registry != s.registry {
        return Err(usage(format!(
            "berth tag works within one registry ({} vs {}); use berth cp to copy between registries",
            s.registry, d.registry
        )));
    }
    let new_tag = d
        .tag
        .clone()
        .filter(|_| d.digest.is_none())
        .ok_or_else(|| usage("the destination needs a tag, not a digest"))?;
    let c = client(&s.registry, common, None)?;
    if d.repository == s.repository {
        // Manifest-only: the same bytes and media type, under another tag.
        let m = c
            .get_manifest(&s.repository, &s.reference_str())
            .await
            .map_err(|e| fail("", e))?;
        c.put_manifest(&d.repository, &new_tag, &m)
            .await
            .map_err(|e| fail("", e))?;
        if common.json {
            print_json(
                &json!({"tagged": d.to_string(), "digest": m.digest, "mediaType": m.media_type}),
            );
        } else {
            println!("Tagged {d}@{}", m.digest);
        }
        return Ok(());
    }
    // Another repository of the same registry: layers arrive by cross-repository mount.
    let report = berth_client::copy(
        &RegistryRepo::new(c.clone(), s.repository.clone()),
        &s.reference_str(),
        &RegistryRepo::new(c, d.repository.clone()),
        &new_tag,
        &CopyOptions {
            reporter: progress::reporter(),
            ..CopyOptions::default()
        },
    )
    .await
    .map_err(|e| fail("", e))?;
    print_report(common, "Tagged", &d.to_string(), &report);
    Ok(())
}
