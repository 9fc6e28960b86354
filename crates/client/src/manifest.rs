//! Manifests and indexes: get (verified against the digest asked for), head, put (raw bytes and
//! media type kept), delete, platform selection.

use std::fmt;

use berth_oci::manifest::DEFAULT_MAX_MANIFEST_BYTES;
use berth_oci::{Algorithm, Digest, Hasher, ManifestKind, ParsedManifest, media_type as mt};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use crate::auth::Scope;
use crate::client::{Client, Req};
use crate::error::{Error, Result};

/// A manifest exactly as the registry stored it: raw bytes, media type and digest.
#[derive(Clone, PartialEq)]
pub struct Manifest {
    /// The raw bytes (never re-serialized, so digests survive copies).
    pub bytes: Bytes,
    /// The media type (the `Content-Type` it is served and pushed with).
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.bytes.len())
            .finish()
    }
}

impl Manifest {
    /// Wraps raw bytes, computing their SHA-256 digest. With `media_type` `None`, the body's
    /// `mediaType` (or its shape) decides.
    ///
    /// ```
    /// let m = berth_client::Manifest::from_bytes(
    ///     br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec(),
    ///     None,
    /// ).unwrap();
    /// assert_eq!(m.media_type, "application/vnd.oci.image.index.v1+json");
    /// ```
    pub fn from_bytes(bytes: impl Into<Bytes>, media_type: Option<&str>) -> Result<Self> {
        let bytes = bytes.into();
        let parsed =
            ParsedManifest::parse(&bytes, media_type).map_err(|e| Error::Invalid(e.to_string()))?;
        let digest = Digest::sha256_of(&bytes);
        Ok(Manifest {
            bytes,
            media_type: parsed.media_type,
            digest,
        })
    }

    /// The parsed view (kind, config, layers, child manifests, subject).
    pub fn parse(&self) -> Result<ParsedManifest> {
        ParsedManifest::parse(&self.bytes, Some(&self.media_type))
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Whether this is an index or a manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == mt::OCI_INDEX || self.media_type == mt::DOCKER_MANIFEST_LIST
    }

    /// The manifest's size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// What a `HEAD` on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// The digest (`Docker-Content-Digest`).
    pub digest: Digest,
    /// The media type (`Content-Type`).
    pub media_type: String,
    /// The size (`Content-Length`).
    pub size: u64,
}

pub use berth_oci::Platform;

/// The `Accept` header for manifests: every kind, schema 1 last (read-only).
pub(crate) fn accept_all() -> String {
    mt::ALL_MANIFESTS.join(", ")
}

fn manifest_path(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Client {
    /// Fetches a manifest or index by tag or digest. A manifest fetched by digest is checked
    /// against it; one fetched by tag is checked against `Docker-Content-Digest` when the
    /// registry sends it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), berth_client::Error> {
    /// let client = berth_client::Client::new("127.0.0.1:5000", Default::default())?;
    /// let m = client.get_manifest("library/alpine", "3.20").await?;
    /// println!("{} {}", m.media_type, m.digest);
    /// # Ok(()) }
    /// ```
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let what = format!("manifest {}/{repo}:{reference}", self.registry());
        let url = self.url(&manifest_path(repo, reference)).await?;
        let req =
            Req::new(Method::GET, url, Scope::pull(repo), &what).header(ACCEPT, &accept_all());
        let resp = self.send_expect(req, &[200]).await?;
        let ctype = header_str(&resp, "content-type").unwrap_or_default();
        let header_digest = header_str(&resp, "docker-content-digest");
        if ctype.starts_with("text/html") {
            return Err(self.protocol(format!(
                "{what}: the registry answered an HTML page, not a manifest"
            )));
        }
        if let Some(len) = resp.content_length()
            && len > DEFAULT_MAX_MANIFEST_BYTES as u64
        {
            return Err(self.protocol(format!(
                "{what}: manifest of {len} bytes exceeds the 4 MiB limit"
            )));
        }
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport_error(e))?;
            if body.len() + chunk.len() > DEFAULT_MAX_MANIFEST_BYTES {
                return Err(self.protocol(format!("{what}: manifest exceeds the 4 MiB limit")));
            }
            body.extend_from_slice(&chunk);
        }
        let bytes = body.freeze();
        let parsed = ParsedManifest::parse(&bytes, Some(&ctype))
            .map_err(|e| self.protocol(format!("{what}: not a valid manifest: {e}")))?;
        let expected: Option<Digest> = match reference.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => header_digest.as_deref().and_then(|h| h.parse().ok()),
        };
        let algorithm = expected
            .as_ref()
            .map(Digest::algorithm)
            .unwrap_or(Algorithm::Sha256);
        let mut h = Hasher::new(algorithm);
        h.update(&bytes);
        let actual = h.finish();
        if parsed.kind != ManifestKind::Schema1
            && let Some(expected) = expected
            && expected != actual
        {
            return Err(Error::DigestMismatch {
                what,
                expected,
                actual,
            });
        }
        let digest = if parsed.kind == ManifestKind::Schema1 {
            // Schema 1 digests cover the payload without signatures: trust the registry's.
            header_digest.and_then(|h| h.parse().ok()).unwrap_or(actual)
        } else {
            actual
        };
        Ok(Manifest {
            bytes,
            media_type: parsed.media_type,
            digest,
        })
    }

    /// `HEAD` on a manifest: its digest, media type and size, without downloading it.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<ManifestInfo> {
        let what = format!("manifest {}/{repo}:{reference}", self.registry());
        let url = self.url(&manifest_path(repo, reference)).await?;
        let req =
            Req::new(Method::HEAD, url, Scope::pull(repo), &what).header(ACCEPT, &accept_all());
        let resp = self.send_expect(req, &[200]).await?;
        let media_type = header_str(&resp, "content-type").unwrap_or_default();
        let size = header_str(&resp, "content-length")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let digest = match (
            header_str(&resp, "docker-content-digest"),
            reference.parse::<Digest>(),
        ) {
            (Some(h), _) => h
                .parse()
                .map_err(|_| self.protocol(format!("{what}: bad Docker-Content-Digest {h:?}")))?,
            (None, Ok(d)) => d,
            // Registries should send the header; without it the only way is to hash the body.
            (None, Err(_)) => {
                return self
                    .get_manifest(repo, reference)
                    .await
                    .map(|m| ManifestInfo {
                        size: m.size(),
                        digest: m.digest,
                        media_type: m.media_type,
                    });
            }
        };
        Ok(ManifestInfo {
            digest,
            media_type,
            size,
        })
    }

    /// Whether a manifest exists (`HEAD`), and what it is.
    pub async fn manifest_exists(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ManifestInfo>> {
        match self.head_manifest(repo, reference).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The digest a tag (or digest) points to, resolved with `HEAD`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), berth_client::Error> {
    /// let client = berth_client::Client::new("127.0.0.1:5000", Default::default())?;
    /// let digest = client.digest("library/alpine", "latest").await?;
    /// println!("{digest}");
    /// # Ok(()) }
    /// ```
    pub async fn digest(&self, repo: &str, reference: &str) -> Result<Digest> {
        Ok(self.head_manifest(repo, reference).await?.digest)
    }

    /// Pushes a manifest under a tag or its digest, with its own bytes and media type. Returns the
    /// digest the registry reports. When the manifest has a `subject` and the registry does not
    /// process it (no `OCI-Subject` header), the referrers tag schema index is updated too.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest> {
        let what = format!("manifest {}/{repo}:{reference}", self.registry());
        let url = self.url(&manifest_path(repo, reference)).await?;
        let req = Req::new(Method::PUT, url, Scope::push(repo), &what)
            .header(CONTENT_TYPE, &manifest.media_type)
            .header(CONTENT_LENGTH, &manifest.bytes.len().to_string())
            .bytes(manifest.bytes.clone());
        let resp = self.send_expect(req, &[200, 201, 202, 204]).await?;
        let subject_processed = resp.headers().contains_key("oci-subject");
        let digest = match header_str(&resp, "docker-content-digest")
            .and_then(|h| h.parse::<Digest>().ok())
        {
            Some(d) => d,
            None => manifest.digest.clone(),
        };
        if digest != manifest.digest && digest.algorithm() == manifest.digest.algorithm() {
            return Err(self.protocol(format!(
                "{what}: the registry stored the manifest as {digest}, but its bytes hash to {}",
                manifest.digest
            )));
        }
        if !subject_processed
            && let Ok(parsed) = manifest.parse()
            && let Some(subject) = parsed.subject.clone()
        {
            self.add_referrer_fallback(repo, &subject.digest, manifest, &parsed)
                .await?;
        }
        Ok(digest)
    }

    /// Deletes a manifest by digest (which removes every tag pointing to it).
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()> {
        let what = format!("manifest {}/{repo}@{digest}", self.registry());
        let url = self.url(&manifest_path(repo, &digest.to_string())).await?;
        let req = Req::new(Method::DELETE, url, Scope::push(repo), &what).deleting();
        self.send_expect(req, &[200, 202, 204]).await?;
        Ok(())
    }

    /// Deletes one tag, leaving the manifest and its other tags. Registries that only delete by
    /// digest make this fail with [`Error::TagDeleteUnsupported`]; nothing is deleted then.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        let info = self.head_manifest(repo, tag).await?;
        let what = format!("tag {}/{repo}:{tag}", self.registry());
        let url = self.url(&manifest_path(repo, tag)).await?;
        let req = Req::new(Method::DELETE, url, Scope::push(repo), &what).deleting();
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        if matches!(status, 200 | 202 | 204) {
            return Ok(());
        }
        let err = self.error_from(resp, &what).await;
        let refused = match &err {
            Error::Registry { status, code, .. } => {
                matches!(status, 400 | 405 | 501)
                    || matches!(
                        code,
                        Some(
                            berth_oci::ErrorCode::Unsupported | berth_oci::ErrorCode::DigestInvalid
                        )
                    )
            }
            _ => false,
        };
        if !refused {
            return Err(err);
        }
        let others = self
            .tags_pointing_to(repo, &info.digest, tag)
            .await
            .unwrap_or_default();
        let others = if others.is_empty() {
            String::new()
        } else {
            format!(" (also tagged {})", others.join(", "))
        };
        Err(Error::TagDeleteUnsupported {
            registry: self.registry().to_owned(),
            tag: tag.to_owned(),
            digest: info.digest,
            others,
        })
    }

    async fn tags_pointing_to(
        &self,
        repo: &str,
        digest: &Digest,
        except: &str,
    ) -> Result<Vec<String>> {
        let tags = self.tags(repo, None).await?;
        let mut out = Vec::new();
        for t in tags.into_iter().filter(|t| t != except).take(200) {
            if self.digest(repo, &t).await.ok().as_ref() == Some(digest) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// For an index, fetches the child manifest for `platform`; for an image manifest, returns it
    /// unchanged (failing if its config says another platform is not checked).
    pub async fn resolve_platform(
        &self,
        repo: &str,
        manifest: Manifest,
        platform: &Platform,
    ) -> Result<Manifest> {
        if !manifest.is_index() {
            return Ok(manifest);
        }
        let parsed = manifest.parse()?;
        let entry = parsed
            .manifests
            .iter()
            .find(|d| platform.matches(d.platform.as_ref()))
            .ok_or_else(|| {
                let have: Vec<String> = parsed
                    .manifests
                    .iter()
                    .filter_map(|d| Platform::of(d.platform.as_ref()))
                    .map(|p| p.to_string())
                    .collect();
                Error::NotFound {
                    what: format!(
                        "platform {platform} in {} (it has: {})",
                        manifest.digest,
                        have.join(", ")
                    ),
                }
            })?;
        self.get_manifest(repo, &entry.digest.to_string()).await
    }

    /// The config blob of an image manifest (at most 16 MiB), checked against its digest.
    pub async fn get_config(&self, repo: &str, manifest: &Manifest) -> Result<Bytes> {
        let parsed = manifest.parse()?;
        let config = parsed.config.ok_or_else(|| {
            Error::Invalid(format!(
                "{} is an index, not an image manifest: pick a platform",
                manifest.digest
            ))
        })?;
        self.get_blob_bytes(repo, &config.digest, 16 * 1024 * 1024)
            .await
    }
}
