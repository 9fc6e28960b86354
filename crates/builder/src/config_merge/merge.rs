//! The merge rules (see the module docs of [`super`]).

use serde_json::{Map, Value};

use super::MergeError;

/// The key that, set to null, clears a map or list before the patch's entries are added.
pub(crate) const CLEAR_KEY: &str = "_*";

/// Keys of the image config's `config` section that may also be written at the top level
/// of a patch (`Env: [...]` instead of `config: {Env: [...]}`). None of them is a
/// top-level field of the OCI image config, so this is unambiguous.
pub(crate) const CONFIG_KEYS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Memory",
    "MemorySwap",
    "CpuShares",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// How a location in the config is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// RFC 7396 for maps and scalars, union for lists.
    Default,
    /// `config.Env`: a list of `K=V`, merged by `K`.
    Env,
    /// `config.Labels`: a map of strings.
    Labels,
    /// `config.ExposedPorts` / `config.Volumes`: maps whose values are always `{}`.
    Set { ports: bool },
    /// `config.Cmd`, `Entrypoint`, `Shell`, `Healthcheck.Test`: replaced whole.
    Command,
}

fn rule(path: &[String]) -> Rule {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["config", "Env"] => Rule::Env,
        ["config", "Labels"] => Rule::Labels,
        ["config", "ExposedPorts"] => Rule::Set { ports: true },
        ["config", "Volumes"] => Rule::Set { ports: false },
        ["config", "Cmd" | "Entrypoint" | "Shell"] | ["config", "Healthcheck", "Test"] => {
            Rule::Command
        }
        _ => Rule::Default,
    }
}

fn rule_error(path: &[String], message: impl Into<String>) -> MergeError {
    MergeError::Rule {
        path: if path.is_empty() {
            "(top level)".to_string()
        } else {
            path.join(".")
        },
        message: message.into(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Merges one parsed patch document into `config` (which must be an object or null).
pub(crate) fn merge_root(config: &mut Value, patch: Value) -> Result<(), MergeError> {
    let mut patch = match patch {
        Value::Null => return Ok(()), // empty document
        Value::Object(map) => map,
        other => {
            return Err(MergeError::PatchNotMapping {
                found: type_name(&other),
            });
        }
    };
    lift_config_keys(&mut patch)?;
    if config.is_null() {
        *config = Value::Object(Map::new());
    }
    let Value::Object(base) = config else {
        return Err(MergeError::BaseNotObject {
            found: type_name(config),
        });
    };
    merge_map(base, patch, &mut Vec::new())
}

/// Moves top-level shorthand keys (`Env`, `Cmd`, …) under `config`.
fn lift_config_keys(patch: &mut Map<String, Value>) -> Result<(), MergeError> {
    let mut lifted = Map::new();
    for key in CONFIG_KEYS {
        if let Some(value) = patch.remove(*key) {
            lifted.insert((*key).to_string(), value);
        }
    }
    if lifted.is_empty() {
        return Ok(());
    }
    match patch
        .entry("config")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(section) => {
            for (key, value) in lifted {
                if section.contains_key(&key) {
                    return Err(rule_error(
                        &["config".to_string(), key.clone()],
                        format!("{key} is set both at the top level and under `config`; keep one"),
                    ));
                }
                section.insert(key, value);
            }
            Ok(())
        }
        other => Err(rule_error(
            &["config".to_string()],
            format!(
                "`config` is {} but top-level config keys ({}) were also given; make `config` a map or drop it",
                type_name(other),
                lifted.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Removes the `_*` key from a patch map, returning whether it asked for a clear.
fn take_clear_key(patch: &mut Map<String, Value>, path: &[String]) -> Result<bool, MergeError> {
    match patch.remove(CLEAR_KEY) {
        None => Ok(false),
        Some(Value::Null) => Ok(true),
        Some(other) => Err(rule_error(
            path,
            format!(
                "`{CLEAR_KEY}` only takes null (`{CLEAR_KEY}: null` clears what the base had), not {}",
                type_name(&other)
            ),
        )),
    }
}

/// Whether a list item is the `{_*: null}` clear marker.
fn is_clear_item(item: &Value) -> bool {
    matches!(item, Value::Object(map) if map.len() == 1 && map.get(CLEAR_KEY) == Some(&Value::Null))
}

fn merge_map(
    base: &mut Map<String, Value>,
    mut patch: Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), MergeError> {
    if take_clear_key(&mut patch, path)? {
        base.clear();
    }
    for (key, value) in patch {
        if value.is_null() {
            base.remove(&key);
            continue;
        }
        path.push(key.clone());
        let slot = base.entry(key).or_insert(Value::Null);
        let result = merge_value(slot, value, path);
        path.pop();
        result?;
    }
    Ok(())
}

/// Merges a non-null `patch` into `base` (`Value::Null` when absent).
fn merge_value(base: &mut Value, patch: Value, path: &mut Vec<String>) -> Result<(), MergeError> {
    match rule(path) {
        Rule::Env => merge_env(base, patch, path),
        Rule::Labels => merge_labels(base, patch, path),
        Rule::Set { ports } => merge_set(base, patch, path, ports),
        Rule::Command => {
            *base = Value::Array(
                command(patch, path)?
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            );
            Ok(())
        }
        Rule::Default => match patch {
            Value::Object(patch) => {
                if !base.is_object() {
                    *base = Value::Object(Map::new());
                }
                let Value::Object(map) = base else {
                    unreachable!("just made it an object")
                };
                merge_map(map, patch, path)
            }
            Value::Array(items) => {
                merge_list(base, items);
                Ok(())
            }
            scalar => {
                *base = scalar;
                Ok(())
            }
        },
    }
}

/// Lists: `{_*: null}` clears the base list; other items are appended, scalars only if
/// the list does not hold them yet (so merging twice is harmless).
fn merge_list(base: &mut Value, items: Vec<Value>) {
    let clear = items.iter().any(is_clear_item);
    let mut result = match std::mem::take(base) {
        Value::Array(existing) if !clear => existing,
        _ => Vec::new(),
    };
    for item in items.into_iter().filter(|i| !is_clear_item(i)) {
        let is_scalar = !matches!(item, Value::Array(_) | Value::Object(_));
        if !(is_scalar && result.contains(&item)) {
            result.push(item);
        }
    }
    *base = Value::Array(result);
}

/// A scalar written where the spec wants a string.
fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `Cmd`, `Entrypoint`, `Shell`, `Healthcheck.Test`: a list of strings.
fn command(patch: Value, path: &[String]) -> Result<Vec<String>, MergeError> {
    let Value::Array(items) = patch else {
        return Err(rule_error(
            path,
            format!(
                "must be a list of strings (exec form, e.g. [\"/bin/sh\", \"-c\", \"…\"]), not {}",
                type_name(&patch)
            ),
        ));
    };
    items
        .iter()
        .filter(|item| !is_clear_item(item))
        .map(|item| {
            scalar_string(item).ok_or_else(|| {
                rule_error(
                    path,
                    format!("list items must be strings, not {}", type_name(item)),
                )
            })
        })
        .collect()
}

/// One operation of a keyed patch (`Env`, `Labels`, `ExposedPorts`, `Volumes`).
#[derive(Debug, PartialEq)]
enum Op {
    Set(String, String),
    Remove(String),
}

/// How bare list items are read by [`keyed_ops`].
#[derive(Clone, Copy, PartialEq)]
enum Items {
    /// `K=V` strings (`Env`, `Labels`).
    KeyValue,
    /// Names (`ExposedPorts`, `Volumes`): each item adds that name.
    Names,
}

/// Reads a map or list patch into (clear?, operations). Maps: `K: V` sets, `K: null`
/// removes, `_*: null` clears. Lists: bare items as per `items`, map items as for maps.
fn keyed_ops(patch: Value, path: &[String], items: Items) -> Result<(bool, Vec<Op>), MergeError> {
    let mut clear = false;
    let mut ops = Vec::new();
    let mut from_map = |mut map: Map<String, Value>, ops: &mut Vec<Op>| -> Result<(), MergeError> {
        clear |= take_clear_key(&mut map, path)?;
        for (key, value) in map {
            if value.is_null() {
                ops.push(Op::Remove(key));
            } else if items == Items::Names {
                ops.push(Op::Set(key, String::new()));
            } else {
                let value = scalar_string(&value).ok_or_else(|| {
                    rule_error(
                        path,
                        format!(
                            "the value of {key:?} must be a string, not {}",
                            type_name(&value)
                        ),
                    )
                })?;
                ops.push(Op::Set(key, value));
            }
        }
        Ok(())
    };
    match patch {
        Value::Object(map) => from_map(map, &mut ops)?,
        Value::Array(list) => {
            for item in list {
                match item {
                    Value::Object(map) => from_map(map, &mut ops)?,
                    other => {
                        let text = scalar_string(&other).ok_or_else(|| {
                            rule_error(
                                path,
                                format!("list items must be strings, not {}", type_name(&other)),
                            )
                        })?;
                        match items {
                            Items::Names => ops.push(Op::Set(text, String::new())),
                            Items::KeyValue => match text.split_once('=') {
                                Some((key, value)) => {
                                    ops.push(Op::Set(key.to_string(), value.to_string()))
                                }
                                None => {
                                    return Err(rule_error(
                                        path,
                                        format!(
                                            "entry {text:?} has no `=`; write `{text}=` for an empty value or `- {text}: null` to remove it"
                                        ),
                                    ));
                                }
                            },
                        }
                    }
                }
            }
        }
        other => {
            return Err(rule_error(
                path,
                format!("must be a map or a list, not {}", type_name(&other)),
            ));
        }
    }
    for op in &ops {
        let (Op::Set(key, _) | Op::Remove(key)) = op;
        if key.is_empty() || (items == Items::KeyValue && key.contains('=')) {
            return Err(rule_error(path, format!("invalid key {key:?}")));
        }
    }
    Ok((clear, ops))
}

fn merge_env(base: &mut Value, patch: Value, path: &[String]) -> Result<(), MergeError> {
    let (clear, ops) = keyed_ops(patch, path, Items::KeyValue)?;
    let mut entries: Vec<String> = match std::mem::take(base) {
        Value::Array(items) if !clear => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    rule_error(path, "the base config's Env holds a non-string entry")
                })
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let key_of = |entry: &str| entry.split_once('=').map_or(entry, |(k, _)| k).to_string();
    for op in ops {
        match op {
            Op::Remove(key) => entries.retain(|e| key_of(e) != key),
            Op::Set(key, value) => {
                let line = format!("{key}={value}");
                match entries.iter().position(|e| key_of(e) == key) {
                    Some(first) => {
                        entries[first] = line;
                        let mut index = 0;
                        entries.retain(|e| {
                            let keep = index <= first || key_of(e) != key;
                            index += 1;
                            keep
                        });
                    }
                    None => entries.push(line),
                }
            }
        }
    }
    *base = Value::Array(entries.into_iter().map(Value::String).collect());
    Ok(())
}

fn merge_labels(base: &mut Value, patch: Value, path: &[String]) -> Result<(), MergeError> {
    let (clear, ops) = keyed_ops(patch, path, Items::KeyValue)?;
    let mut map = match std::mem::take(base) {
        Value::Object(map) if !clear => map,
        _ => Map::new(),
    };
    for op in ops {
        match op {
            Op::Set(key, value) => {
                map.insert(key, Value::String(value));
            }
            Op::Remove(key) => {
                map.remove(&key);
            }
        }
    }
    *base = Value::Object(map);
    Ok(())
}

fn merge_set(
    base: &mut Value,
    patch: Value,
    path: &[String],
    ports: bool,
) -> Result<(), MergeError> {
    let (clear, ops) = keyed_ops(patch, path, Items::Names)?;
    let mut map = match std::mem::take(base) {
        Value::Object(map) if !clear => map,
        _ => Map::new(),
    };
    // Docker's default protocol is tcp: `8080` means `8080/tcp`.
    let normalize = |name: String| {
        if ports && !name.contains('/') {
            format!("{name}/tcp")
        } else {
            name
        }
    };
    for op in ops {
        match op {
            Op::Set(name, _) => {
                map.insert(normalize(name), Value::Object(Map::new()));
            }
            Op::Remove(name) => {
                map.remove(&normalize(name));
            }
        }
    }
    *base = Value::Object(map);
    Ok(())
}
