//! Image configs and manifests as JSON documents: a new config for a layer pushed from
//! scratch, a layer and its history entry appended to a base config, the edits the CLI
//! offers (`--env`, `--entrypoint`…), and manifests and indexes rebuilt on a new config
//! and layer list, in the base's format or converted between Docker schema 2 and OCI.
//!
//! Everything here is pure: JSON in, JSON out. Whatever moves blobs lives in the caller.
//! Documents are edited as [`serde_json::Value`] rather than `oci-spec` structs on purpose:
//! a base config carries fields no struct knows (Docker's `container_config`, vendor
//! keys), and an append must keep them all.

use std::collections::BTreeMap;

use berth_oci::media_type as mt;
use berth_oci::{Descriptor, Digest};
use serde_json::{Map, Value, json};

use crate::compression::{
    CompressionKind, DOCKER_LAYER_TAR, DOCKER_LAYER_TAR_GZIP, DOCKER_LAYER_TAR_ZSTD,
    MediaTypeFlavor, OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_LAYER_TAR_ZSTD, layer_media_type,
};

/// OCI media type of a non-distributable gzip layer (deprecated by OCI, still produced).
pub const OCI_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// The two manifest families an image can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// OCI image manifest, config and index media types.
    Oci,
    /// Docker schema 2 manifest, container config and manifest list media types.
    Docker,
}

impl ImageFormat {
    /// The format of a manifest or index media type (`None` for anything else).
    pub fn of_media_type(media_type: &str) -> Option<ImageFormat> {
        match media_type {
            mt::OCI_MANIFEST | mt::OCI_INDEX => Some(ImageFormat::Oci),
            mt::DOCKER_MANIFEST | mt::DOCKER_MANIFEST_LIST => Some(ImageFormat::Docker),
            _ => None,
        }
    }

    /// The layer media type family of this format.
    pub fn flavor(self) -> MediaTypeFlavor {
        match self {
            ImageFormat::Oci => MediaTypeFlavor::Oci,
            ImageFormat::Docker => MediaTypeFlavor::Docker,
        }
    }

    /// Image manifest media type.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => mt::OCI_MANIFEST,
            ImageFormat::Docker => mt::DOCKER_MANIFEST,
        }
    }

    /// Index (manifest list) media type.
    pub fn index_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => mt::OCI_INDEX,
            ImageFormat::Docker => mt::DOCKER_MANIFEST_LIST,
        }
    }

    /// Image config media type.
    pub fn config_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => mt::OCI_CONFIG,
            ImageFormat::Docker => mt::DOCKER_CONFIG,
        }
    }
}

/// Why an image document could not be built or edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The base config is not shaped like an image config.
    #[error("the base image config is not valid: {0}; is the base reference an image?")]
    BadConfig(String),
    /// The base manifest is not shaped like an image manifest or index.
    #[error("the base manifest is not valid: {0}")]
    BadManifest(String),
    /// A layer media type has no counterpart in the requested format.
    #[error("layer media type {0:?} cannot be converted; keep the base's format")]
    UnconvertibleLayer(String),
    /// A command-line edit is malformed.
    #[error("{0}")]
    BadEdit(String),
}

pub use berth_oci::Platform;

/// A config for an image built from scratch: platform, creation time, no layers yet.
pub fn new_config(platform: &Platform, created: &str) -> Value {
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [] },
        "history": [],
    });
    if let Some(v) = &platform.variant {
        config["variant"] = json!(v);
    }
    config
}

/// Appends a layer's `diff_id` to `rootfs.diff_ids` and a history entry describing it, and
/// sets `created`. The base's other fields are kept as they are.
pub fn append_layer(
    config: &mut Value,
    diff_id: &Digest,
    created: &str,
    created_by: &str,
) -> Result<(), ImageError> {
    let obj = config
        .as_object_mut()
        .ok_or_else(|| ImageError::BadConfig("not a JSON object".into()))?;
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({ "type": "layers", "diff_ids": [] }));
    let diff_ids = rootfs
        .as_object_mut()
        .ok_or_else(|| ImageError::BadConfig("rootfs is not an object".into()))?
        .entry("diff_ids")
        .or_insert_with(|| json!([]));
    diff_ids
        .as_array_mut()
        .ok_or_else(|| ImageError::BadConfig("rootfs.diff_ids is not a list".into()))?
        .push(json!(diff_id));
    push_history(obj, created, created_by, false)?;
    obj.insert("created".into(), json!(created));
    Ok(())
}

/// Records a config-only change (no layer) in the history and sets `created`.
pub fn record_change(
    config: &mut Value,
    created: &str,
    created_by: &str,
) -> Result<(), ImageError> {
    let obj = config
        .as_object_mut()
        .ok_or_else(|| ImageError::BadConfig("not a JSON object".into()))?;
    push_history(obj, created, created_by, true)?;
    obj.insert("created".into(), json!(created));
    Ok(())
}

fn push_history(
    obj: &mut Map<String, Value>,
    created: &str,
    created_by: &str,
    empty_layer: bool,
) -> Result<(), ImageError> {
    let history = obj.entry("history").or_insert_with(|| json!([]));
    let list = history
        .as_array_mut()
        .ok_or_else(|| ImageError::BadConfig("history is not a list".into()))?;
    let mut entry = json!({ "created": created, "created_by": created_by, "comment": "berth" });
    if empty_layer {
        entry["empty_layer"] = json!(true);
    }
    list.push(entry);
    Ok(())
}

/// The edits `berth push-layer`, `append` and `mutate` take on the command line, applied after
/// the YAML/JSON merge file so that a flag always wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigEdits {
    /// `KEY=VALUE`: replaces the variable if present, appends it otherwise.
    pub env: Vec<String>,
    /// New `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// New `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// New `WorkingDir`.
    pub workdir: Option<String>,
    /// New `User`.
    pub user: Option<String>,
    /// Labels set (same keys overwritten).
    pub labels: BTreeMap<String, String>,
    /// Ports exposed, such as `8080/tcp` (a bare number means TCP).
    pub expose: Vec<String>,
}

/// Applies [`ConfigEdits`] to an image config's `config` section.
pub fn apply_edits(config: &mut Value, edits: &ConfigEdits) -> Result<(), ImageError> {
    let obj = config
        .as_object_mut()
        .ok_or_else(|| ImageError::BadConfig("not a JSON object".into()))?;
    let section = obj.entry("config").or_insert_with(|| json!({}));
    if section.is_null() {
        *section = json!({});
    }
    let section = section
        .as_object_mut()
        .ok_or_else(|| ImageError::BadConfig("config is not an object".into()))?;
    for kv in &edits.env {
        let Some((key, _)) = kv.split_once('=') else {
            return Err(ImageError::BadEdit(format!(
                "bad --env {kv:?}: expected KEY=VALUE"
            )));
        };
        if key.is_empty() {
            return Err(ImageError::BadEdit(format!(
                "bad --env {kv:?}: the variable name is empty"
            )));
        }
        let env = section.entry("Env").or_insert_with(|| json!([]));
        if env.is_null() {
            *env = json!([]);
        }
        let list = env
            .as_array_mut()
            .ok_or_else(|| ImageError::BadConfig("config.Env is not a list".into()))?;
        let prefix = format!("{key}=");
        match list
            .iter_mut()
            .find(|v| v.as_str().is_some_and(|s| s.starts_with(&prefix)))
        {
            Some(slot) => *slot = json!(kv),
            None => list.push(json!(kv)),
        }
    }
    if let Some(v) = &edits.entrypoint {
        section.insert("Entrypoint".into(), json!(v));
    }
    if let Some(v) = &edits.cmd {
        section.insert("Cmd".into(), json!(v));
    }
    if let Some(v) = &edits.workdir {
        section.insert("WorkingDir".into(), json!(v));
    }
    if let Some(v) = &edits.user {
        section.insert("User".into(), json!(v));
    }
    if !edits.labels.is_empty() {
        let labels = section.entry("Labels").or_insert_with(|| json!({}));
        if labels.is_null() {
            *labels = json!({});
        }
        let map = labels
            .as_object_mut()
            .ok_or_else(|| ImageError::BadConfig("config.Labels is not a map".into()))?;
        for (k, v) in &edits.labels {
            map.insert(k.clone(), json!(v));
        }
    }
    for port in &edits.expose {
        let port = if port.contains('/') {
            port.clone()
        } else {
            format!("{port}/tcp")
        };
        let (num, proto) = port.split_once('/').expect("has a slash");
        if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(ImageError::BadEdit(format!(
                "bad --expose {port:?}: expected PORT[/tcp|udp|sctp]"
            )));
        }
        let ports = section.entry("ExposedPorts").or_insert_with(|| json!({}));
        if ports.is_null() {
            *ports = json!({});
        }
        ports
            .as_object_mut()
            .ok_or_else(|| ImageError::BadConfig("config.ExposedPorts is not a map".into()))?
            .insert(port, json!({}));
    }
    Ok(())
}

/// Parses a command-line `--entrypoint`/`--cmd` value: a JSON list (`["/app","--flag"]`) is
/// taken as it is; anything else is split on whitespace (no shell quoting); an empty string
/// clears the setting (an empty list).
pub fn parse_command(s: &str) -> Result<Vec<String>, ImageError> {
    let t = s.trim();
    if t.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(t).map_err(|e| {
            ImageError::BadEdit(format!(
                "bad command {s:?}: not a JSON list of strings ({e})"
            ))
        });
    }
    Ok(t.split_whitespace().map(str::to_owned).collect())
}

/// The compression of a layer, read from its media type.
pub fn layer_compression(media_type: &str) -> Option<CompressionKind> {
    match media_type {
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => Some(CompressionKind::None),
        OCI_LAYER_TAR_GZIP | DOCKER_LAYER_TAR_GZIP => Some(CompressionKind::Gzip),
        OCI_LAYER_TAR_ZSTD | DOCKER_LAYER_TAR_ZSTD => Some(CompressionKind::Zstd),
        _ => None,
    }
}

/// A layer media type in the other format's spelling (foreign layers included). Types that
/// are already in `format`'s family, or unknown (artifacts), are returned unchanged.
pub fn convert_layer_media_type(
    media_type: &str,
    format: ImageFormat,
) -> Result<String, ImageError> {
    if let Some(kind) = layer_compression(media_type) {
        return Ok(layer_media_type(kind, format.flavor()).to_owned());
    }
    Ok(match (media_type, format) {
        (mt::DOCKER_FOREIGN_LAYER, ImageFormat::Oci) => OCI_NONDISTRIBUTABLE_GZIP.to_owned(),
        (OCI_NONDISTRIBUTABLE_GZIP, ImageFormat::Docker) => mt::DOCKER_FOREIGN_LAYER.to_owned(),
        (other, _) => other.to_owned(),
    })
}

/// Rebuilds an image manifest on a new config: the base's layers (media types converted to
/// `format` when it differs from the base's), then `new_layer` if any. Fields of the base
/// that remain valid (`annotations`, layer `urls` and annotations) are kept; `subject` is
/// dropped, since the new image is not an artifact of anything.
pub fn rebuild_manifest(
    base: &Value,
    format: ImageFormat,
    config: &Descriptor,
    new_layer: Option<&Descriptor>,
) -> Result<Value, ImageError> {
    let layers = base
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| ImageError::BadManifest("it has no layers list".into()))?;
    let mut out_layers = Vec::with_capacity(layers.len() + 1);
    for layer in layers {
        let mut layer = layer.clone();
        let media_type = layer
            .get("mediaType")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::BadManifest("a layer has no mediaType".into()))?
            .to_owned();
        layer["mediaType"] = json!(convert_layer_media_type(&media_type, format)?);
        out_layers.push(layer);
    }
    if let Some(layer) = new_layer {
        let mut d = layer.to_json();
        d["mediaType"] = json!(convert_layer_media_type(&layer.media_type, format)?);
        out_layers.push(d);
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest_media_type(),
        "config": { "mediaType": format.config_media_type(), "digest": config.digest, "size": config.size },
        "layers": out_layers,
    });
    if format == ImageFormat::Oci
        && let Some(a) = base.get("annotations").filter(|a| a.is_object())
    {
        manifest["annotations"] = a.clone();
    }
    Ok(manifest)
}

/// A manifest for a new image from its config and layers.
pub fn new_manifest(
    format: ImageFormat,
    config: &Descriptor,
    layers: &[Descriptor],
) -> Result<Value, ImageError> {
    let base = json!({ "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>() });
    rebuild_manifest(&base, format, config, None)
}

/// Rebuilds an index: each child descriptor whose digest is a key of `replaced` points to the
/// new manifest instead (platform and annotations kept); the others stay as they are.
/// Media types follow `format`.
pub fn rebuild_index(
    base: &Value,
    format: ImageFormat,
    replaced: &BTreeMap<Digest, Descriptor>,
) -> Result<Value, ImageError> {
    let children = base
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| ImageError::BadManifest("the index has no manifests list".into()))?;
    let mut out = Vec::with_capacity(children.len());
    for child in children {
        let digest = child
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::BadManifest("an index entry has no digest".into()))?;
        let mut child = child.clone();
        if let Some(new) = digest.parse().ok().and_then(|d: Digest| replaced.get(&d)) {
            child["digest"] = json!(new.digest);
            child["size"] = json!(new.size);
            child["mediaType"] = json!(new.media_type);
        } else if let Some(m) = child.get("mediaType").and_then(Value::as_str) {
            // Unchanged children keep their own bytes, hence their own media type.
            child["mediaType"] = json!(m);
        }
        out.push(child);
    }
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": format.index_media_type(),
        "manifests": out,
    });
    if format == ImageFormat::Oci
        && let Some(a) = base.get("annotations").filter(|a| a.is_object())
    {
        index["annotations"] = a.clone();
    }
    Ok(index)
}

/// Serializes a document the way it is pushed (compact JSON; keys sorted, so the same
/// document always gives the same digest).
pub fn to_bytes(doc: &Value) -> Vec<u8> {
    serde_json::to_vec(doc).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(mt: &str, d: char) -> Descriptor {
        let digest = format!("sha256:{}", d.to_string().repeat(64));
        Descriptor::new(mt, digest.parse().unwrap(), 10)
    }

    #[test]
    fn append_layer_keeps_unknown_fields_and_adds_history() {
        let mut c = json!({
            "architecture": "amd64", "os": "linux", "container_config": {"x": 1},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:a"]},
            "history": [{"created_by": "base"}]
        });
        let b = Digest::sha256_of(b"b");
        append_layer(&mut c, &b, "2024-01-01T00:00:00Z", "berth append").unwrap();
        assert_eq!(c["rootfs"]["diff_ids"], json!(["sha256:a", b.to_string()]));
        assert_eq!(c["history"][1]["created_by"], "berth append");
        assert_eq!(c["history"][1].get("empty_layer"), None);
        assert_eq!(c["container_config"], json!({"x": 1}));
        assert_eq!(c["created"], "2024-01-01T00:00:00Z");
    }

    #[test]
    fn record_change_marks_an_empty_layer() {
        let mut c = new_config(&Platform::host(), "t");
        record_change(&mut c, "t2", "berth mutate").unwrap();
        assert_eq!(c["history"][0]["empty_layer"], true);
        assert_eq!(c["rootfs"]["diff_ids"], json!([]));
    }

    #[test]
    fn edits_replace_env_by_name_and_set_fields() {
        let mut c = json!({"config": {"Env": ["PATH=/bin", "A=1"], "Labels": null}});
        let edits = ConfigEdits {
            env: vec!["A=2".into(), "B=3".into()],
            entrypoint: Some(vec!["/app".into()]),
            cmd: Some(vec![]),
            workdir: Some("/srv".into()),
            user: Some("1000".into()),
            labels: [("k".to_owned(), "v".to_owned())].into(),
            expose: vec!["8080".into(), "53/udp".into()],
        };
        apply_edits(&mut c, &edits).unwrap();
        assert_eq!(c["config"]["Env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(c["config"]["Entrypoint"], json!(["/app"]));
        assert_eq!(c["config"]["Cmd"], json!([]));
        assert_eq!(c["config"]["WorkingDir"], "/srv");
        assert_eq!(c["config"]["User"], "1000");
        assert_eq!(c["config"]["Labels"], json!({"k": "v"}));
        assert_eq!(
            c["config"]["ExposedPorts"],
            json!({"8080/tcp": {}, "53/udp": {}})
        );
    }

    #[test]
    fn bad_edits_are_refused_with_the_value() {
        let mut c = json!({});
        for edits in [
            ConfigEdits {
                env: vec!["NOEQUALS".into()],
                ..Default::default()
            },
            ConfigEdits {
                expose: vec!["http".into()],
                ..Default::default()
            },
        ] {
            let e = apply_edits(&mut c, &edits).unwrap_err().to_string();
            assert!(e.contains("NOEQUALS") || e.contains("http"), "{e}");
        }
    }

    #[test]
    fn commands_parse_as_json_lists_or_words() {
        assert_eq!(parse_command(r#"["/a b","c"]"#).unwrap(), vec!["/a b", "c"]);
        assert_eq!(
            parse_command("/app --x 1").unwrap(),
            vec!["/app", "--x", "1"]
        );
        assert!(parse_command("").unwrap().is_empty());
        assert!(parse_command("[1]").is_err());
    }

    #[test]
    fn docker_manifest_converts_to_oci_with_the_new_layer_on_top() {
        let base = json!({
            "schemaVersion": 2,
            "mediaType": mt::DOCKER_MANIFEST,
            "config": blob(mt::DOCKER_CONFIG, 'c').to_json(),
            "layers": [
                blob(DOCKER_LAYER_TAR_GZIP, '1').to_json(),
                {"mediaType": mt::DOCKER_FOREIGN_LAYER, "digest": format!("sha256:{}", "2".repeat(64)), "size": 5, "urls": ["https://x/y"]},
            ]
        });
        let config = blob(mt::OCI_CONFIG, 'd');
        let layer = blob(OCI_LAYER_TAR_ZSTD, '3');
        let m = rebuild_manifest(&base, ImageFormat::Oci, &config, Some(&layer)).unwrap();
        assert_eq!(m["mediaType"], mt::OCI_MANIFEST);
        assert_eq!(m["config"]["mediaType"], mt::OCI_CONFIG);
        assert_eq!(m["config"]["digest"], json!(config.digest));
        let types: Vec<&str> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                OCI_LAYER_TAR_GZIP,
                OCI_NONDISTRIBUTABLE_GZIP,
                OCI_LAYER_TAR_ZSTD
            ]
        );
        assert_eq!(m["layers"][1]["urls"], json!(["https://x/y"]));
    }

    #[test]
    fn keeping_docker_format_keeps_docker_layer_types() {
        let base = json!({"layers": [blob(DOCKER_LAYER_TAR_GZIP, '1').to_json()]});
        let layer = blob(OCI_LAYER_TAR_GZIP, '3');
        let m = rebuild_manifest(
            &base,
            ImageFormat::Docker,
            &blob(mt::DOCKER_CONFIG, 'd'),
            Some(&layer),
        )
        .unwrap();
        assert_eq!(m["mediaType"], mt::DOCKER_MANIFEST);
        assert_eq!(m["layers"][1]["mediaType"], DOCKER_LAYER_TAR_GZIP);
    }

    #[test]
    fn index_children_are_replaced_by_digest_and_keep_platforms() {
        let a = blob(mt::OCI_MANIFEST, 'a');
        let b = blob(mt::OCI_MANIFEST, 'b');
        let mut ja = a.to_json();
        ja["platform"] = json!({"os": "linux", "architecture": "amd64"});
        let mut jb = b.to_json();
        jb["platform"] = json!({"os": "linux", "architecture": "arm64"});
        let base = json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": [ja, jb]});
        let new_a = blob(mt::OCI_MANIFEST, 'e');
        let replaced = [(a.digest.clone(), new_a.clone())].into();
        let idx = rebuild_index(&base, ImageFormat::Oci, &replaced).unwrap();
        assert_eq!(idx["manifests"][0]["digest"], json!(new_a.digest));
        assert_eq!(idx["manifests"][0]["platform"]["architecture"], "amd64");
        assert_eq!(idx["manifests"][1]["digest"], json!(b.digest));
    }
}
