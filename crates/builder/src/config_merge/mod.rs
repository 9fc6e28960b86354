//! Merging a YAML or JSON document into an image config.
//!
//! The base is the whole OCI image config as a `serde_json::Value` (`architecture`,
//! `os`, `config: {Env, Cmd, …}`, `rootfs`, `history`, …). The patch is a YAML document
//! (JSON is YAML, so `.json` patches go through the same parser). Keys of the `config`
//! section may also be written at the top level of the patch: `Env: [...]` means
//! `config: {Env: [...]}` (giving both is an error).
//!
//! # Rules
//!
//! JSON Merge Patch (RFC 7396), extended for lists:
//!
//! | patch value | effect |
//! |---|---|
//! | `key: null` (or `key:` / `key: ~` in YAML) | deletes `key` |
//! | a map | merged into the base map, recursively |
//! | a scalar | replaces the base value; numbers and booleans keep their type, `""` sets an empty string |
//! | a list | (generic lists such as `OnBuild`, `history`) appended to the base list; scalars already present are not added twice |
//! | `_*: null` in a map, or the item `- _*: null` in a list | first clears what the base had, then the patch's other entries are added |
//!
//! Special locations:
//!
//! - `config.Env` merges **by variable name**. The patch may be a list or a map:
//!   - list items `K=V` set `K` (the first existing `K` is replaced in place, later
//!     duplicates dropped, new names appended in patch order); `K=` sets an empty value;
//!   - list items that are maps (`- K: V`, `- K: null`) set or remove `K`;
//!   - map form `{K: V, K2: null}` sets `K` and removes `K2` (new names are appended
//!     in the map's key order, which is sorted unless serde_json's `preserve_order`
//!     feature is on: use the list form when the order of new variables matters);
//!   - `K=null` is the literal string `null`, not a removal; an item without `=` is an
//!     error (it is ambiguous);
//!   - numbers and booleans become strings (`PORT: 8080` gives `PORT=8080`).
//! - `config.Labels`: a map of strings; `name: null` removes a label, numbers and
//!   booleans become strings; a list of `k=v` items is accepted too.
//! - `config.ExposedPorts` and `config.Volumes`: maps whose values are always `{}`;
//!   `name: null` removes an entry. A list of names adds them (`ExposedPorts: [8080,
//!   53/udp]`), a port without protocol means `/tcp`. Beware: in YAML `8080/tcp:` with
//!   nothing after the colon is null, i.e. a removal; write `8080/tcp: {}` or use a list.
//! - `config.Cmd`, `config.Entrypoint`, `config.Shell` and `config.Healthcheck.Test`
//!   are replaced whole and must be lists (numbers become strings).
//!
//! # Variables
//!
//! `$VAR` and `${VAR}` are expanded from the given environment map **only inside
//! double-quoted values** (`"…"`, which includes every JSON string); plain, single-quoted
//! and block scalars and all keys are kept as written. `${VAR:-default}` and
//! `${VAR-default}` give defaults, `$$` is a literal `$`, and an unset variable without a
//! default is an error naming the variable, line and column. See `yaml.rs` for why the
//! document is read from parser events.

mod expand;
mod merge;
mod yaml;

use std::collections::BTreeMap;

use serde_json::Value;

/// Why a patch could not be merged. The base config is left untouched on error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The document is not valid YAML/JSON.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The document is valid YAML but cannot be used (duplicate key, unsupported tag,
    /// complex key, infinity…).
    #[error("line {line}, column {column}: {message}")]
    Semantic {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `$VAR` expansion failed in a double-quoted value.
    #[error("line {line}, column {column}: {message}")]
    Variable {
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// Which variable and how to fix it.
        message: String,
    },
    /// A value does not fit the rule of its location (e.g. an `Env` item without `=`).
    #[error("{path}: {message}")]
    Rule {
        /// Dotted path of the location, e.g. `config.Env`.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The patch document is not a map.
    #[error(
        "the patch must be a map of keys at the top level (like `Env:` or `config:`), not {found}"
    )]
    PatchNotMapping {
        /// What it is.
        found: &'static str,
    },
    /// The base config is not a JSON object.
    #[error("the base image config must be a JSON object, not {found}")]
    BaseNotObject {
        /// What it is.
        found: &'static str,
    },
}

/// Parses `source` (YAML or JSON; several `---` documents are applied in order) and
/// merges it into `config` following the [module rules](self). `env` is used for
/// `$VAR` expansion in double-quoted values (pass the process environment from the CLI,
/// a fixed map in tests).
///
/// # Errors
///
/// [`MergeError`] with a line and column for syntax, YAML and variable errors, and the
/// config path for rule violations. On error `config` is unchanged.
pub fn merge_document(
    config: &mut Value,
    source: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), MergeError> {
    let documents = yaml::parse_documents(source, env)?;
    let mut merged = config.clone();
    for document in documents {
        merge::merge_root(&mut merged, document)?;
    }
    *config = merged;
    Ok(())
}

/// Merges an already parsed patch (no variable expansion) into `config`.
///
/// # Errors
///
/// As [`merge_document`]; on error `config` is unchanged.
pub fn merge_value(config: &mut Value, patch: Value) -> Result<(), MergeError> {
    let mut merged = config.clone();
    merge::merge_root(&mut merged, patch)?;
    *config = merged;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/bin:/bin", "LANG=C", "OLD=1"],
                "Cmd": ["/bin/sh"],
                "Entrypoint": ["/init", "--"],
                "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
                "Volumes": {"/data": {}},
                "Labels": {"a": "1", "b": "2"},
                "WorkingDir": "/srv",
                "OnBuild": ["RUN a"]
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        })
    }

    fn env() -> BTreeMap<String, String> {
        [("VERSION", "1.2.3"), ("HOME", "/root")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn merged(patch: &str) -> Value {
        let mut config = base();
        merge_document(&mut config, patch, &env()).unwrap();
        config
    }

    fn merge_err(patch: &str) -> MergeError {
        let mut config = base();
        let err = merge_document(&mut config, patch, &env()).unwrap_err();
        assert_eq!(config, base(), "config must be unchanged on error");
        err
    }

    #[test]
    fn null_deletes_a_key() {
        let c = merged("config:\n  WorkingDir: null\n  User:\n");
        assert!(c["config"].get("WorkingDir").is_none());
        assert!(c["config"].get("User").is_none());
    }

    #[test]
    fn maps_merge_recursively_and_scalars_replace() {
        let c =
            merged("config:\n  User: \"1000\"\n  StopSignal: SIGTERM\nos: linux\nvariant: v8\n");
        assert_eq!(c["config"]["User"], "1000");
        assert_eq!(c["config"]["StopSignal"], "SIGTERM");
        assert_eq!(c["config"]["WorkingDir"], "/srv", "untouched keys stay");
        assert_eq!(c["variant"], "v8");
    }

    #[test]
    fn empty_string_and_types_are_kept() {
        let c = merged("WorkingDir: \"\"\nArgsEscaped: true\nMemory: 512\n");
        assert_eq!(c["config"]["WorkingDir"], "");
        assert_eq!(c["config"]["ArgsEscaped"], true);
        assert_eq!(c["config"]["Memory"], 512);
    }

    #[test]
    fn top_level_config_keys_are_shorthand() {
        let c = merged("User: app\n");
        assert_eq!(c["config"]["User"], "app");
        assert!(c.get("User").is_none());
        let err = merge_err("User: a\nconfig:\n  User: b\n");
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[test]
    fn env_merges_by_key() {
        let c = merged("Env:\n  - LANG=C.UTF-8\n  - NEW=x=y\n  - OLD: null\n  - EMPTY=\n");
        assert_eq!(
            c["config"]["Env"],
            json!(["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "NEW=x=y", "EMPTY="])
        );
    }

    #[test]
    fn env_map_form() {
        let c =
            merged("Env:\n  PORT: 8080\n  OLD: null\n  DEBUG: false\n  PATH: \"/opt/bin:$HOME\"\n");
        assert_eq!(
            c["config"]["Env"],
            // New names from a map come in key order (serde_json maps are sorted).
            json!(["PATH=/opt/bin:/root", "LANG=C", "DEBUG=false", "PORT=8080"])
        );
    }

    #[test]
    fn env_duplicates_collapse_onto_the_first() {
        let mut config = json!({"config": {"Env": ["A=1", "B=2", "A=3"]}});
        merge_document(&mut config, "Env: [A=9]", &env()).unwrap();
        assert_eq!(config["config"]["Env"], json!(["A=9", "B=2"]));
    }

    #[test]
    fn env_clear_then_add() {
        let c = merged("Env:\n  - _*: null\n  - ONLY=1\n");
        assert_eq!(c["config"]["Env"], json!(["ONLY=1"]));
        let c = merged("Env: {_*: null, ONLY: 2}\n");
        assert_eq!(c["config"]["Env"], json!(["ONLY=2"]));
    }

    #[test]
    fn env_item_without_equals_is_an_error() {
        let err = merge_err("Env: [JUSTNAME]\n");
        let msg = err.to_string();
        assert!(msg.starts_with("config.Env:"), "{msg}");
        assert!(msg.contains("JUSTNAME="), "{msg}");
    }

    #[test]
    fn env_null_string_is_literal() {
        let c = merged("Env: [X=null]\n");
        assert!(
            c["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("X=null"))
        );
    }

    #[test]
    fn commands_are_replaced_whole() {
        let c = merged("Cmd: [serve, --port, 80]\nEntrypoint: [/app]\n");
        assert_eq!(c["config"]["Cmd"], json!(["serve", "--port", "80"]));
        assert_eq!(c["config"]["Entrypoint"], json!(["/app"]));
        let c = merged("Entrypoint: null\n");
        assert!(c["config"].get("Entrypoint").is_none());
        let err = merge_err("Cmd: echo hi\n");
        assert!(err.to_string().contains("exec form"), "{err}");
        let c =
            merged("Healthcheck:\n  Test: [CMD, curl, -f, localhost]\n  Interval: 30000000000\n");
        assert_eq!(
            c["config"]["Healthcheck"]["Test"],
            json!(["CMD", "curl", "-f", "localhost"])
        );
        assert_eq!(c["config"]["Healthcheck"]["Interval"], 30_000_000_000u64);
    }

    #[test]
    fn ports_and_volumes_are_sets() {
        let c = merged("ExposedPorts:\n  443/tcp: null\n  8080/tcp: {}\nVolumes: [/cache]\n");
        assert_eq!(
            c["config"]["ExposedPorts"],
            json!({"80/tcp": {}, "8080/tcp": {}})
        );
        assert_eq!(c["config"]["Volumes"], json!({"/data": {}, "/cache": {}}));
        let c = merged("ExposedPorts: [9000, 53/udp]\n");
        assert_eq!(
            c["config"]["ExposedPorts"],
            json!({"80/tcp": {}, "443/tcp": {}, "9000/tcp": {}, "53/udp": {}})
        );
        let c = merged("ExposedPorts: {_*: null, 1/tcp: {}}\nVolumes: {/data: null}\n");
        assert_eq!(c["config"]["ExposedPorts"], json!({"1/tcp": {}}));
        assert_eq!(c["config"]["Volumes"], json!({}));
    }

    #[test]
    fn labels_are_string_maps() {
        let c = merged("Labels:\n  a: null\n  c: 3\n  d: \"v$VERSION\"\n  e: ''\n");
        assert_eq!(
            c["config"]["Labels"],
            json!({"b": "2", "c": "3", "d": "v1.2.3", "e": ""})
        );
        let c = merged("Labels: {_*: null, only: x}\n");
        assert_eq!(c["config"]["Labels"], json!({"only": "x"}));
        let err = merge_err("Labels: {a: [1]}\n");
        assert!(err.to_string().contains("config.Labels"), "{err}");
    }

    #[test]
    fn generic_lists_append_and_clear() {
        let c = merged("OnBuild: [RUN b, RUN a]\n");
        assert_eq!(c["config"]["OnBuild"], json!(["RUN a", "RUN b"]));
        let c = merged("OnBuild: [{_*: null}, RUN c]\n");
        assert_eq!(c["config"]["OnBuild"], json!(["RUN c"]));
    }

    #[test]
    fn map_clear_key() {
        let c = merged("config:\n  _*: null\n  User: x\n");
        assert_eq!(c["config"], json!({"User": "x"}));
        let err = merge_err("config:\n  _*: 1\n");
        assert!(err.to_string().contains("only takes null"), "{err}");
    }

    #[test]
    fn json_patch_documents() {
        let c = merged(r#"{"config": {"Env": ["V=$VERSION"], "User": "1"}, "author": null}"#);
        assert!(
            c["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("V=1.2.3"))
        );
        assert_eq!(c["config"]["User"], "1");
    }

    #[test]
    fn variables_only_in_double_quotes() {
        let c = merged("Labels:\n  dq: \"$VERSION\"\n  sq: '$VERSION'\n  plain: $VERSION\n");
        assert_eq!(c["config"]["Labels"]["dq"], "1.2.3");
        assert_eq!(c["config"]["Labels"]["sq"], "$VERSION");
        assert_eq!(c["config"]["Labels"]["plain"], "$VERSION");
        let err = merge_err("Labels:\n  x: \"$MISSING\"\n");
        assert!(
            matches!(
                err,
                MergeError::Variable {
                    line: 2,
                    column: 6,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn errors_and_edge_documents() {
        assert!(matches!(
            merge_err("- a\n- b\n"),
            MergeError::PatchNotMapping { .. }
        ));
        assert!(matches!(merge_err("a: [\n"), MergeError::Syntax { .. }));
        assert_eq!(merged(""), base());
        assert_eq!(merged("# only a comment\n"), base());
        let mut not_object = json!([1]);
        assert!(matches!(
            merge_document(&mut not_object, "a: 1", &env()),
            Err(MergeError::BaseNotObject { .. })
        ));
        let mut null = Value::Null;
        merge_document(&mut null, "Env: [A=1]", &env()).unwrap();
        assert_eq!(null, json!({"config": {"Env": ["A=1"]}}));
    }

    #[test]
    fn several_documents_apply_in_order() {
        let c = merged("User: a\n---\nUser: b\n");
        assert_eq!(c["config"]["User"], "b");
    }

    #[test]
    fn merge_value_uses_the_same_rules() {
        let mut c = base();
        merge_value(&mut c, json!({"Env": {"LANG": null}})).unwrap();
        assert_eq!(c["config"]["Env"], json!(["PATH=/usr/bin:/bin", "OLD=1"]));
    }
}
