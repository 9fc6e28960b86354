//! Manifests: stored as blobs, linked as revisions of a repository, named by tags.

use berth_oci::manifest::{ManifestKind, ParsedManifest};
use berth_oci::{Digest, media_type};
use bytes::Bytes;

use crate::{Registry, RegistryError, Result, check_name, paths};

/// A manifest read back from storage.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// The media type to answer with (as pushed, when Berth stored it).
    pub media_type: String,
    /// The exact bytes.
    pub bytes: Bytes,
}

/// The outcome of a manifest PUT.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// The manifest's digest.
    pub digest: Digest,
    /// The subject, when the manifest declares one (for the `OCI-Subject` header).
    pub subject: Option<Digest>,
    /// The tags the push created or moved (the reference, if a tag, and any extra tags).
    pub tags: Vec<String>,
}

/// Most tags one manifest PUT may create (`?tag=` parameters; the spec's draft asks for at
/// least 10).
pub const MAX_TAGS_PER_PUSH: usize = 100;

/// What a manifest reference names: a tag or a digest.
enum Target {
    Tag(String),
    Digest(Digest),
}

fn parse_reference(reference: &str) -> Result<Target> {
    if reference.contains(':') {
        reference
            .parse::<Digest>()
            .map(Target::Digest)
            .map_err(|e| RegistryError::DigestInvalid(e.to_string()))
    } else {
        berth_oci::validate_tag(reference)
            .map(|_| Target::Tag(reference.to_owned()))
            .map_err(|e| RegistryError::TagInvalid(e.to_string()))
    }
}

/// At most 128 characters of a reference, for messages (a made-up reference can be 64 KB).
fn shorten(reference: &str) -> String {
    match reference.char_indices().nth(128) {
        Some((i, _)) => format!("{}...", &reference[..i]),
        None => reference.to_owned(),
    }
}

/// The media type of manifest bytes stored without a record of it (written by another registry).
fn sniff_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<i64>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        signatures: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(p) => match (p.media_type, p.schema_version) {
            (Some(m), _) if !m.is_empty() => m,
            (_, Some(1)) if p.signatures.is_some() => media_type::DOCKER_SCHEMA1_SIGNED.into(),
            (_, Some(1)) => media_type::DOCKER_SCHEMA1.into(),
            _ if p.manifests.is_some() => media_type::OCI_INDEX.into(),
            _ => media_type::OCI_MANIFEST.into(),
        },
        Err(_) => media_type::OCI_MANIFEST.into(),
    }
}

impl Registry {
    async fn repo_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .exists(&format!("{}/_manifests", paths::repo(name)))
            .await?
            || self
                .exists(&format!("{}/_layers", paths::repo(name)))
                .await?)
    }

    /// Resolves a tag or digest to the digest of a manifest revision in the repository.
    ///
    /// A reference that is no valid tag names no manifest: it is reported unknown (the spec's
    /// 404 for GET and HEAD, as Distribution answers), not invalid; PUT refuses it instead.
    pub async fn resolve(&self, name: &str, reference: &str) -> Result<Digest> {
        check_name(name)?;
        let target = match parse_reference(reference) {
            Err(RegistryError::TagInvalid(why)) => {
                return Err(RegistryError::ManifestUnknown(format!(
                    "{} ({why})",
                    shorten(reference)
                )));
            }
            other => other?,
        };
        let digest = match target {
            Target::Digest(d) => d,
            Target::Tag(t) => match self.read_link(&paths::tag_current(name, &t)).await? {
                Some(d) => d,
                None => {
                    if !self.repo_exists(name).await? {
                        return Err(RegistryError::NameUnknown(name.to_owned()));
                    }
                    return Err(RegistryError::ManifestUnknown(t));
                }
            },
        };
        if self
            .read_link(&paths::revision_link(name, &digest))
            .await?
            .is_none()
        {
            if !self.repo_exists(name).await? {
                return Err(RegistryError::NameUnknown(name.to_owned()));
            }
            return Err(RegistryError::ManifestUnknown(reference.to_owned()));
        }
        Ok(digest)
    }

    /// Reads a manifest by tag or digest.
    pub async fn get_manifest(&self, name: &str, reference: &str) -> Result<StoredManifest> {
        let m = self.get_manifest_unrecorded(name, reference).await?;
        self.index_pull(name, &m.digest);
        Ok(m)
    }

    /// [`Registry::get_manifest`] that records no pull (`HEAD`, and the registry's own reads).
    pub async fn get_manifest_unrecorded(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<StoredManifest> {
        let digest = self.resolve(name, reference).await?;
        // Manifests written by other registries may exceed our push limit; reading allows more.
        let limit = self.config.max_manifest_bytes.max(16 << 20);
        let bytes = match self.storage.read(&paths::blob_data(&digest), limit).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(RegistryError::ManifestUnknown(reference.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        let media_type = match self
            .storage
            .read(&paths::revision_content_type(name, &digest), 1024)
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.is_not_found() => sniff_media_type(&bytes),
            Err(e) => return Err(e.into()),
        };
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Stores a manifest under a tag or its digest, after checking that it parses and that
    /// everything it references is in the repository.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifest> {
        self.put_manifest_tagged(name, reference, content_type, bytes, &[])
            .await
    }

    /// [`Registry::put_manifest`] that also points `tags` at the manifest (the draft spec's
    /// `PUT /v2/<name>/manifests/<digest>?tag=<tag>&tag=...`). Every tag is checked before
    /// anything is written; a manifest pushed by a sha512 digest is tagged with that digest.
    pub async fn put_manifest_tagged(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: Bytes,
        tags: &[String],
    ) -> Result<PutManifest> {
        let r = self
            .put_manifest_unobserved(name, reference, content_type, bytes, tags)
            .await;
        self.observe_space(r)
    }

    async fn put_manifest_unobserved(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[String],
    ) -> Result<PutManifest> {
        check_name(name)?;
        self.check_writable()?;
        let target = parse_reference(reference)?;
        if extra_tags.len() > MAX_TAGS_PER_PUSH {
            return Err(RegistryError::TagInvalid(format!(
                "{} tag parameters: at most {MAX_TAGS_PER_PUSH} tags can be set in one push",
                extra_tags.len()
            )));
        }
        let mut tags: Vec<String> = Vec::new();
        if let Target::Tag(t) = &target {
            tags.push(t.clone());
        }
        for t in extra_tags {
            berth_oci::validate_tag(t)
                .map_err(|e| RegistryError::TagInvalid(format!("tag parameter: {e}")))?;
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        if bytes.len() as u64 > self.config.max_manifest_bytes {
            return Err(RegistryError::TooLarge {
                what: "manifest",
                limit: self.config.max_manifest_bytes,
            });
        }
        let digest = match &target {
            Target::Digest(d) => {
                let mut h = berth_oci::Hasher::new(d.algorithm());
                h.update(&bytes);
                let actual = h.finish();
                if &actual != d {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest has digest {actual}, not {d} as named in the URL"
                    )));
                }
                actual
            }
            Target::Tag(_) => Digest::sha256_of(&bytes),
        };
        let parsed = ParsedManifest::parse(&bytes, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        if parsed.kind == ManifestKind::Schema1 {
            return Err(RegistryError::ManifestInvalid(
                "Docker schema 1 manifests are read-only: push a schema 2 or OCI manifest".into(),
            ));
        }
        self.check_references(name, &parsed).await?;
        for tag in &tags {
            self.check_tag_mutable(name, tag, Some(&digest)).await?;
        }
        self.check_quota_manifest(name, &digest, bytes.len() as u64, &parsed)
            .await?;
        let referrer_entry = match &parsed.subject {
            Some(_) => Some(crate::referrers::referrer_entry(
                &parsed,
                &digest,
                bytes.len() as u64,
            )?),
            None => None,
        };

        self.index_check().await?;
        let since = std::time::SystemTime::now();
        let data = paths::blob_data(&digest);
        if !self.exists(&data).await? {
            self.storage.put(&data, bytes.clone()).await?;
        }
        // The layer link lets Distribution (and Berth) serve the manifest as a blob too.
        self.write_link(&paths::layer_link(name, &digest), &digest)
            .await?;
        self.storage
            .put(
                &paths::revision_content_type(name, &digest),
                Bytes::from(parsed.media_type.clone()),
            )
            .await?;
        self.write_link(&paths::revision_link(name, &digest), &digest)
            .await?;
        if let (Some(subject), Some(entry)) = (&parsed.subject, &referrer_entry) {
            self.add_referrer(name, &subject.digest, &digest, entry.clone())
                .await?;
        }
        for tag in &tags {
            // The current link first: a tag whose folder exists must resolve (a crash between
            // the two writes leaves only the index entry missing, which resolving never reads).
            self.write_link(&paths::tag_current(name, tag), &digest)
                .await?;
            self.write_link(&paths::tag_index(name, tag, &digest), &digest)
                .await?;
        }
        self.index_manifest(
            name,
            &parsed,
            &digest,
            bytes.len() as u64,
            referrer_entry.as_deref(),
            &tags,
            since,
        )
        .await?;
        tracing::info!(repository = name, reference, digest = %digest, tags = tags.len(), "manifest pushed");
        Ok(PutManifest {
            digest,
            subject: parsed.subject.map(|s| s.digest),
            tags,
        })
    }

    async fn check_references(&self, name: &str, m: &ParsedManifest) -> Result<()> {
        if let Some(c) = &m.config {
            self.check_blob_ref(name, &c.digest).await?;
        }
        for l in &m.layers {
            if berth_oci::media_type::is_foreign_layer(&l.media_type) && !l.urls.is_empty() {
                continue;
            }
            self.check_blob_ref(name, &l.digest).await?;
        }
        for child in &m.manifests {
            let link = paths::revision_link(name, &child.digest);
            if self.read_link(&link).await?.is_none() {
                return Err(RegistryError::ManifestBlobUnknown(child.digest.clone()));
            }
            // A collection running now keeps what a fresh link names.
            self.touch_link(&link, &child.digest).await?;
        }
        Ok(())
    }

    async fn check_blob_ref(&self, name: &str, d: &Digest) -> Result<()> {
        match self.head_blob(name, d).await {
            Ok(_) => Ok(()),
            Err(RegistryError::BlobUnknown(_)) => {
                Err(RegistryError::ManifestBlobUnknown(d.clone()))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a tag (by tag) or a manifest revision and every tag pointing at it (by digest).
    pub async fn delete_manifest(&self, name: &str, reference: &str) -> Result<()> {
        check_name(name)?;
        self.check_delete()?;
        match parse_reference(reference)? {
            Target::Tag(tag) => {
                if self
                    .read_link(&paths::tag_current(name, &tag))
                    .await?
                    .is_none()
                {
                    if !self.repo_exists(name).await? {
                        return Err(RegistryError::NameUnknown(name.to_owned()));
                    }
                    return Err(RegistryError::ManifestUnknown(tag));
                }
                self.check_tag_mutable(name, &tag, None).await?;
                self.index_delete_tag(name, &tag).await?;
                self.delete_quiet(&paths::tag_dir(name, &tag)).await?;
                tracing::info!(repository = name, tag, "tag deleted");
            }
            Target::Digest(d) => {
                let stored = self.get_manifest_unrecorded(name, &d.to_string()).await?;
                self.check_manifest_deletable(name, &d).await?;
                self.index_delete_manifest(name, &d).await?;
                for tag in self.all_tags(name).await? {
                    if self
                        .read_link(&paths::tag_current(name, &tag))
                        .await?
                        .as_ref()
                        == Some(&d)
                    {
                        self.delete_quiet(&paths::tag_dir(name, &tag)).await?;
                    }
                }
                self.delete_quiet(&paths::revision_dir(name, &d)).await?;
                if let Ok(parsed) = ParsedManifest::parse(&stored.bytes, Some(&stored.media_type))
                    && let Some(subject) = parsed.subject
                {
                    self.delete_quiet(&paths::referrer(name, &subject.digest, &d))
                        .await?;
                }
                tracing::info!(repository = name, digest = %d, "manifest deleted");
            }
        }
        Ok(())
    }
}
