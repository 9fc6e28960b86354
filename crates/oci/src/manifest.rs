//! Manifest inspection for the registry: what kind a manifest is and which blobs and manifests it
//! references.
//!
//! This is deliberately a lenient view (unknown fields are ignored and kept in the stored bytes,
//! which are never re-serialized), because a registry must store artifacts of any type byte for
//! byte. Clients that want the full typed model use [`oci_spec::image`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::media_type as mt;

/// The largest manifest Berth accepts by default (Distribution uses 4 MiB too).
pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Which kind of manifest a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json` (images and artifacts).
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`.
    OciIndex,
    /// Docker schema 2 image manifest.
    DockerManifest,
    /// Docker schema 2 manifest list.
    DockerManifestList,
    /// Docker schema 1 (signed or not); served when found in storage, never accepted on push.
    Schema1,
}

impl ManifestKind {
    /// The canonical media type of this kind.
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => mt::OCI_MANIFEST,
            ManifestKind::OciIndex => mt::OCI_INDEX,
            ManifestKind::DockerManifest => mt::DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => mt::DOCKER_MANIFEST_LIST,
            ManifestKind::Schema1 => mt::DOCKER_SCHEMA1_SIGNED,
        }
    }

    /// Whether the kind lists child manifests rather than layers.
    pub fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }

    fn from_media_type(m: &str) -> Option<Self> {
        Some(match m {
            mt::OCI_MANIFEST => ManifestKind::OciManifest,
            mt::OCI_INDEX => ManifestKind::OciIndex,
            mt::DOCKER_MANIFEST => ManifestKind::DockerManifest,
            mt::DOCKER_MANIFEST_LIST => ManifestKind::DockerManifestList,
            mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED => ManifestKind::Schema1,
            _ => return None,
        })
    }
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid JSON of a known shape: {0}")]
    Json(String),
    /// The media type is not one a registry stores.
    #[error(
        "unsupported manifest media type {0:?}: push an OCI image manifest or index, or a Docker schema 2 manifest or list"
    )]
    UnknownMediaType(String),
    /// The `Content-Type` header and the body's `mediaType` disagree.
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch {
        /// What the header said.
        header: String,
        /// What the body said.
        body: String,
    },
    /// `schemaVersion` is missing or wrong.
    #[error("manifest schemaVersion must be 2, found {0}")]
    SchemaVersion(String),
    /// A descriptor is malformed.
    #[error("invalid descriptor in manifest: {0}")]
    Descriptor(String),
    /// Arrays and objects nest deeper than any manifest needs (and than clients can read).
    #[error(
        "manifest JSON nests arrays and objects more than {limit} levels deep: no manifest needs that, and clients cannot read it"
    )]
    TooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
}

/// Deepest nesting of JSON arrays and objects a manifest may have: the most serde_json's
/// recursion limit (128) reads as a `serde_json::Value`, so that whatever is stored here can be
/// read back whole (Go clients stop at 10,000). Real manifests nest five or six levels.
pub const MAX_JSON_DEPTH: usize = 127;

/// Checks that `bytes` nest arrays and objects at most `limit` levels deep.
///
/// Written by hand because serde skips unknown fields without a depth limit (a field nested
/// 100,000 levels deep parses), and a full `serde_json::Value` parse would allocate the tree
/// this check exists to refuse. Only brackets outside strings count; the JSON itself is
/// checked by the parser afterwards.
pub fn check_json_depth(bytes: &[u8], limit: usize) -> Result<(), ManifestError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err(ManifestError::TooDeep { limit });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A content descriptor: what manifests and indexes say about a blob or a manifest they
/// reference.
///
/// Reading one (as part of [`ParsedManifest::parse`], or with `serde`) checks the digest and
/// refuses a negative or non-integer size; writing one gives the OCI JSON shape
/// (`mediaType`, `digest`, `size`, then the optional fields that are set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawDescriptor")]
pub struct Descriptor {
    /// Media type of the target (empty when a parsed descriptor gave none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size in bytes of the target.
    pub size: u64,
    /// Where a foreign layer can be fetched from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Artifact type, for index entries and referrers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
    /// Platform, kept as given (index entries); see [`crate::Platform::of`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
}

impl Descriptor {
    /// A descriptor of `size` bytes of `media_type` content with `digest`, and nothing else.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: vec![],
            artifact_type: None,
            annotations: None,
            platform: None,
        }
    }

    /// The descriptor as a JSON value, as written into manifests.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a descriptor serializes to JSON")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    // Signed on purpose: a negative size is refused with a message naming the digest, and
    // sizes past i64::MAX are refused as Distribution (Go's int64) refuses them.
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: Option<Map<String, Value>>,
    #[serde(default)]
    platform: Option<Value>,
}

impl TryFrom<RawDescriptor> for Descriptor {
    type Error = ManifestError;
    fn try_from(r: RawDescriptor) -> Result<Self, ManifestError> {
        let digest = r
            .digest
            .parse::<Digest>()
            .map_err(|e| ManifestError::Descriptor(e.to_string()))?;
        let size = u64::try_from(r.size)
            .map_err(|_| ManifestError::Descriptor(format!("negative size for {digest}")))?;
        Ok(Descriptor {
            media_type: r.media_type.unwrap_or_default(),
            digest,
            size,
            urls: r.urls,
            artifact_type: r.artifact_type,
            annotations: r.annotations,
            platform: r.platform,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<Value>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    subject: Option<RawDescriptor>,
    #[serde(default)]
    annotations: Option<Map<String, Value>>,
    #[serde(default)]
    fs_layers: Option<Vec<Schema1Layer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema1Layer {
    blob_sum: String,
}

/// What a registry knows about a manifest after parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The kind.
    pub kind: ManifestKind,
    /// The media type to store and serve as `Content-Type`.
    pub media_type: String,
    /// The config descriptor (image manifests).
    pub config: Option<Descriptor>,
    /// Layer descriptors (image manifests; schema 1 blob sums appear here too).
    pub layers: Vec<Descriptor>,
    /// Child manifests (indexes).
    pub manifests: Vec<Descriptor>,
    /// The subject, for referrers.
    pub subject: Option<Descriptor>,
    /// The manifest's `artifactType`, if set.
    pub artifact_type: Option<String>,
    /// The manifest's annotations.
    pub annotations: Option<Map<String, Value>>,
}

impl ParsedManifest {
    /// The artifact type a referrers listing shows: `artifactType`, else the config's media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| {
            if self.kind == ManifestKind::OciManifest {
                self.config.as_ref().map(|c| c.media_type.clone())
            } else {
                None
            }
        })
    }

    /// Parses manifest bytes. `content_type` is the request's `Content-Type` (parameters are
    /// ignored); when absent or generic, the body's `mediaType` (or its shape) decides.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        // JSON is UTF-8 (RFC 8259), and serde skips unknown fields without checking theirs:
        // invalid bytes there would be stored and break every reader that parses the whole.
        if let Err(e) = std::str::from_utf8(bytes) {
            return Err(ManifestError::Json(format!(
                "not UTF-8 at byte {}",
                e.valid_up_to()
            )));
        }
        check_json_depth(bytes, MAX_JSON_DEPTH)?;
        // The whole document must be JSON a reader can hold (an unknown field's number such
        // as 1e999 is skipped unchecked by the typed parse but fails every whole read); the
        // depth check above bounds this parse.
        serde_json::from_slice::<Value>(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let header = content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|c| {
                !c.is_empty() && c != "application/json" && c != "application/octet-stream"
            });

        if let (Some(h), Some(b)) = (&header, &raw.media_type) {
            // Schema 1 bodies carry no mediaType; for the others the two must agree.
            if h != b {
                return Err(ManifestError::MediaTypeMismatch {
                    header: h.clone(),
                    body: b.clone(),
                });
            }
        }
        let media_type = match (&header, &raw.media_type) {
            (Some(h), _) => h.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => {
                if raw.manifests.is_some() {
                    mt::OCI_INDEX.to_owned()
                } else if raw.fs_layers.is_some() {
                    mt::DOCKER_SCHEMA1_SIGNED.to_owned()
                } else {
                    mt::OCI_MANIFEST.to_owned()
                }
            }
        };
        let kind = ManifestKind::from_media_type(&media_type)
            .ok_or_else(|| ManifestError::UnknownMediaType(media_type.clone()))?;

        let version = raw.schema_version.as_ref().and_then(Value::as_i64);
        let want = if kind == ManifestKind::Schema1 { 1 } else { 2 };
        if version != Some(want) {
            return Err(ManifestError::SchemaVersion(
                raw.schema_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "nothing".into()),
            ));
        }

        let conv = |v: Option<Vec<RawDescriptor>>| -> Result<Vec<Descriptor>, ManifestError> {
            v.unwrap_or_default()
                .into_iter()
                .map(Descriptor::try_from)
                .collect()
        };
        let mut parsed = ParsedManifest {
            kind,
            media_type,
            config: raw.config.map(Descriptor::try_from).transpose()?,
            layers: conv(raw.layers)?,
            manifests: conv(raw.manifests)?,
            subject: raw.subject.map(Descriptor::try_from).transpose()?,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        };
        match kind {
            ManifestKind::OciManifest | ManifestKind::DockerManifest => {
                if parsed.config.is_none() {
                    return Err(ManifestError::Json(
                        "image manifest has no config descriptor".into(),
                    ));
                }
                if !parsed.manifests.is_empty() {
                    return Err(ManifestError::Json(
                        "image manifest must not list manifests".into(),
                    ));
                }
            }
            ManifestKind::OciIndex | ManifestKind::DockerManifestList => {
                if !parsed.layers.is_empty() || parsed.config.is_some() {
                    return Err(ManifestError::Json(
                        "an index lists manifests, not layers".into(),
                    ));
                }
            }
            ManifestKind::Schema1 => {
                for l in raw.fs_layers.unwrap_or_default() {
                    let digest = l
                        .blob_sum
                        .parse::<Digest>()
                        .map_err(|e| ManifestError::Descriptor(e.to_string()))?;
                    parsed
                        .layers
                        .push(Descriptor::new(mt::DOCKER_LAYER_GZIP, digest, 0));
                }
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(mt_field: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,{mt_field}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":0}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D}","size":2}}}}"#
        )
    }

    /// `image` with an unknown field nested `levels` deep (strings with brackets around it).
    fn nested(levels: usize) -> String {
        let body = image("");
        let deep = format!(
            r#""x":"[{{\"]","deep":{}"s"{},"#,
            "[".repeat(levels),
            "]".repeat(levels)
        );
        body.replacen('{', &format!("{{{deep}"), 1)
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        // An unknown field nested 100,000 levels: serde would skip it and accept the manifest.
        let e = ParsedManifest::parse(nested(100_000).as_bytes(), None).unwrap_err();
        assert!(
            matches!(
                e,
                ManifestError::TooDeep {
                    limit: MAX_JSON_DEPTH
                }
            ),
            "{e}"
        );
        // One level under the limit (the manifest object itself is one level) is fine, and
        // brackets inside strings do not count.
        let m = ParsedManifest::parse(nested(MAX_JSON_DEPTH - 1).as_bytes(), None).unwrap();
        assert_eq!(m.layers.len(), 1);
        assert!(ParsedManifest::parse(nested(MAX_JSON_DEPTH).as_bytes(), None).is_err());
    }

    #[test]
    fn invalid_utf8_in_an_unknown_field_is_refused() {
        // Found by the `manifest` fuzz target: serde skips unknown fields unchecked.
        let mut body = image("").into_bytes();
        let tail = body.split_off(1);
        body.extend_from_slice(b"\"x-unknown\":\"\xc8\xc8\",");
        body.extend_from_slice(&tail);
        let e = ParsedManifest::parse(&body, None).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn numbers_out_of_range_in_an_unknown_field_are_refused() {
        // Found by the `manifest` fuzz target: the typed parse skips unknown fields unchecked.
        let body = image("").replacen('{', r#"{"x-unknown":[1e999],"#, 1);
        let e = ParsedManifest::parse(body.as_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("number out of range"), "{e}");
    }

    #[test]
    fn oci_manifest_with_and_without_header() {
        let m = ParsedManifest::parse(image("").as_bytes(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::OciManifest);
        assert_eq!(m.layers.len(), 1);
        assert!(m.subject.is_some());
        assert_eq!(m.effective_artifact_type().as_deref(), Some(mt::OCI_CONFIG));
        let body = image(r#""mediaType":"application/vnd.oci.image.manifest.v1+json","#);
        let m = ParsedManifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
    }

    #[test]
    fn refuses_bad_manifests() {
        let body = image(r#""mediaType":"application/vnd.oci.image.index.v1+json","#);
        assert!(matches!(
            ParsedManifest::parse(body.as_bytes(), Some(mt::OCI_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            ParsedManifest::parse(b"{", None),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            ParsedManifest::parse(image("").as_bytes(), Some("application/x-nope")),
            Err(ManifestError::UnknownMediaType(_))
        ));
        let v1 = image("").replace("\"schemaVersion\":2", "\"schemaVersion\":3");
        assert!(matches!(
            ParsedManifest::parse(v1.as_bytes(), Some(mt::OCI_MANIFEST)),
            Err(ManifestError::SchemaVersion(_))
        ));
        let bad_digest = image("").replace(D, "sha256:1234");
        assert!(matches!(
            ParsedManifest::parse(bad_digest.as_bytes(), Some(mt::OCI_MANIFEST)),
            Err(ManifestError::Descriptor(_))
        ));
    }

    #[test]
    fn sizes_must_be_non_negative_integers() {
        let negative = image("").replace("\"size\":2", "\"size\":-2");
        assert_eq!(
            ParsedManifest::parse(negative.as_bytes(), Some(mt::OCI_MANIFEST)),
            Err(ManifestError::Descriptor(format!("negative size for {D}")))
        );
        let fraction = image("").replace("\"size\":2", "\"size\":1.5");
        assert!(matches!(
            ParsedManifest::parse(fraction.as_bytes(), Some(mt::OCI_MANIFEST)),
            Err(ManifestError::Json(_))
        ));
        let m = ParsedManifest::parse(image("").as_bytes(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(m.subject.unwrap().size, 2u64);
    }

    #[test]
    fn descriptor_json() {
        let d = Descriptor::new(mt::OCI_CONFIG, D.parse().unwrap(), 7);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            format!(
                r#"{{"mediaType":"{}","digest":"{D}","size":7}}"#,
                mt::OCI_CONFIG
            )
        );
        assert_eq!(
            d.to_json(),
            serde_json::json!({"mediaType": mt::OCI_CONFIG, "digest": D, "size": 7})
        );
        let back: Descriptor = serde_json::from_value(d.to_json()).unwrap();
        assert_eq!(back, d);
        let negative = serde_json::json!({"mediaType": "x", "digest": D, "size": -1});
        assert!(serde_json::from_value::<Descriptor>(negative).is_err());
    }

    #[test]
    fn index() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{D}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some(mt::DOCKER_MANIFEST_LIST)).unwrap();
        assert_eq!(m.kind, ManifestKind::DockerManifestList);
        assert_eq!(m.manifests.len(), 1);
    }
}
