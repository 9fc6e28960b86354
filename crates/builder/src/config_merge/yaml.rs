//! YAML/JSON documents to `serde_json::Value`, knowing which scalars were double-quoted.
//!
//! Why not `serde_saphyr::from_str::<Value>`: deserializing through serde erases how a
//! scalar was written, and `$VAR` must only be expanded in double-quoted values. Pre-
//! scanning the text for quotes would have to re-implement YAML's quoting, escaping,
//! block scalars, comments and flow context to be right. Instead we read the event stream
//! of the parser serde-saphyr itself is built on (`serde_saphyr::granit_parser`, re-
//! exported by serde-saphyr, so there is no second YAML implementation in the build):
//! every scalar event carries its style, its decoded text and its position. We build the
//! value tree from those events, resolving plain scalars with the YAML 1.2 core schema
//! (the schema serde-saphyr uses too), aliases, and `<<` merge keys. Syntax errors carry
//! the parser's line and column.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::MergeError;
use super::expand::expand;

/// Parses every document of `source`; a document that is empty yields `Value::Null`.
pub(crate) fn parse_documents(
    source: &str,
    env: &BTreeMap<String, String>,
) -> Result<Vec<Value>, MergeError> {
    let mut parser = Parser::new_from_str(source);
    let mut builder = Builder {
        env,
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        current: None,
    };
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| MergeError::Syntax {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info(),
        })?;
        builder.event(event, span)?;
    }
    Ok(builder.docs)
}

struct PendingKey {
    key: String,
    /// A plain `<<` key: the value is merged into the mapping.
    merge: bool,
    span: Span,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        /// Values of `<<` keys, merged at the end of the mapping.
        merges: Vec<(Value, Span)>,
        key: Option<PendingKey>,
        anchor: usize,
    },
}

struct Builder<'e> {
    env: &'e BTreeMap<String, String>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    docs: Vec<Value>,
    current: Option<Value>,
}

fn semantic(span: Span, message: impl Into<String>) -> MergeError {
    MergeError::Semantic {
        line: span.start.line(),
        column: span.start.col() + 1,
        message: message.into(),
    }
}

impl Builder<'_> {
    fn in_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), MergeError> {
        match event {
            Event::DocumentStart(..) => self.current = None,
            Event::DocumentEnd => {
                self.docs.push(self.current.take().unwrap_or(Value::Null));
                self.anchors.clear();
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.in_key_position() {
                    if anchor != 0 {
                        self.anchors.insert(anchor, Value::String(text.to_string()));
                    }
                    let merge = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                    self.set_key(text.into_owned(), merge, span);
                } else {
                    let value = self.scalar(&text, style, tag.as_deref(), span)?;
                    if anchor != 0 {
                        self.anchors.insert(anchor, value.clone());
                    }
                    self.push(value, span)?;
                }
            }
            Event::Alias(id) => {
                let value =
                    self.anchors.get(&id).cloned().ok_or_else(|| {
                        semantic(span, "alias to an anchor that is not defined yet")
                    })?;
                if self.in_key_position() {
                    let Value::String(key) = value else {
                        return Err(semantic(span, "only string aliases can be mapping keys"));
                    };
                    self.set_key(key, false, span);
                } else {
                    self.push(value, span)?;
                }
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.check_collection(tag.as_deref(), "seq", span)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(_, anchor, tag) => {
                self.check_collection(tag.as_deref(), "map", span)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    merges: Vec::new(),
                    key: None,
                    anchor,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, anchor }) = self.stack.pop() {
                    let value = Value::Array(items);
                    if anchor != 0 {
                        self.anchors.insert(anchor, value.clone());
                    }
                    self.push(value, span)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    map,
                    merges,
                    anchor,
                    ..
                }) = self.stack.pop()
                {
                    let value = Value::Object(apply_merge_keys(map, merges)?);
                    if anchor != 0 {
                        self.anchors.insert(anchor, value.clone());
                    }
                    self.push(value, span)?;
                }
            }
            Event::UnresolvedAlias(name) => {
                return Err(semantic(span, format!("alias *{name} has no anchor")));
            }
            _ => {} // stream start/end, comments, anchor metadata
        }
        Ok(())
    }

    fn check_collection(
        &self,
        tag: Option<&Tag>,
        kind: &str,
        span: Span,
    ) -> Result<(), MergeError> {
        if self.in_key_position() {
            return Err(semantic(
                span,
                "mapping keys must be scalars (complex keys are not supported)",
            ));
        }
        match tag {
            Some(tag) if tag.core_suffix() != Some(kind) => Err(semantic(
                span,
                format!("unsupported tag {tag:?} on a collection; remove the tag"),
            )),
            _ => Ok(()),
        }
    }

    fn set_key(&mut self, key: String, merge: bool, span: Span) {
        if let Some(Frame::Map { key: slot, .. }) = self.stack.last_mut() {
            *slot = Some(PendingKey { key, merge, span });
        }
    }

    fn push(&mut self, value: Value, span: Span) -> Result<(), MergeError> {
        match self.stack.last_mut() {
            None => self.current = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map, merges, key, ..
            }) => {
                let PendingKey {
                    key,
                    merge,
                    span: key_span,
                } = key.take().expect("value after a key");
                if merge {
                    merges.push((value, span));
                } else if map.contains_key(&key) {
                    return Err(semantic(
                        key_span,
                        format!("duplicate key {key:?}; keep only one of them"),
                    ));
                } else {
                    map.insert(key, value);
                }
            }
        }
        Ok(())
    }

    /// Resolves a scalar in value position.
    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        span: Span,
    ) -> Result<Value, MergeError> {
        let text = if style == ScalarStyle::DoubleQuoted {
            std::borrow::Cow::Owned(expand(text, self.env).map_err(|m| MergeError::Variable {
                line: span.start.line(),
                column: span.start.col() + 1,
                message: m,
            })?)
        } else {
            std::borrow::Cow::Borrowed(text)
        };
        if let Some(tag) = tag {
            let bad = |what: &str| semantic(span, format!("{text:?} is not a valid {what}"));
            return match tag.core_suffix() {
                Some("str") => Ok(Value::String(text.into_owned())),
                Some("null") => Ok(Value::Null),
                Some("bool") => resolve_bool(&text)
                    .map(Value::Bool)
                    .ok_or_else(|| bad("boolean")),
                Some("int") => match resolve_int(&text) {
                    Some(Ok(n)) => Ok(Value::Number(n)),
                    _ => Err(bad("integer")),
                },
                Some("float") => match resolve_float(&text).or_else(|| {
                    resolve_int(&text)
                        .and_then(Result::ok)
                        .and_then(|n| n.as_f64())
                        .map(Ok)
                }) {
                    Some(Ok(f)) => Number::from_f64(f)
                        .map(Value::Number)
                        .ok_or_else(|| bad("float")),
                    _ => Err(semantic(span, format!("{text:?} is not a finite float"))),
                },
                _ => Err(semantic(
                    span,
                    format!(
                        "unsupported tag {tag:?}; only the YAML core tags (!!str, !!int, …) are understood"
                    ),
                )),
            };
        }
        if style != ScalarStyle::Plain {
            return Ok(Value::String(text.into_owned()));
        }
        resolve_plain(&text).map_err(|m| semantic(span, m))
    }
}

/// `<<` merge keys: keys of the merged mappings are added unless the mapping sets them
/// itself; with a list of mappings, earlier ones win.
fn apply_merge_keys(
    explicit: Map<String, Value>,
    merges: Vec<(Value, Span)>,
) -> Result<Map<String, Value>, MergeError> {
    if merges.is_empty() {
        return Ok(explicit);
    }
    let mut merged = Map::new();
    for (value, span) in merges {
        let sources = match value {
            Value::Object(map) => vec![map],
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(map),
                    _ => Err(semantic(span, "`<<` takes a mapping or a list of mappings")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(semantic(span, "`<<` takes a mapping or a list of mappings")),
        };
        for source in sources {
            for (k, v) in source {
                merged.entry(k).or_insert(v);
            }
        }
    }
    for (k, v) in explicit {
        merged.insert(k, v);
    }
    Ok(merged)
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// YAML 1.2 core schema integers: `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`.
/// `None` if not an integer, `Some(Err)` if an integer out of range.
fn resolve_int(text: &str) -> Option<Result<Number, String>> {
    let out_of_range = || Err(format!("integer {text} is out of the 64-bit range"));
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(
                u64::from_str_radix(hex, 16)
                    .map(Number::from)
                    .or_else(|_| out_of_range()),
            );
        }
        return None;
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Some(
                u64::from_str_radix(oct, 8)
                    .map(Number::from)
                    .or_else(|_| out_of_range()),
            );
        }
        return None;
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parsed = if text.starts_with('-') {
        text.parse::<i64>().map(Number::from).ok()
    } else {
        digits.parse::<u64>().map(Number::from).ok()
    };
    Some(parsed.map_or_else(out_of_range, Ok))
}

/// YAML 1.2 core schema floats. `Some(Err)` for `.inf` / `.nan`, which JSON cannot hold.
fn resolve_float(text: &str) -> Option<Result<f64, String>> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(Err(format!(
            "{text} cannot be represented in JSON; quote it to keep it as a string"
        )));
    }
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac_part {
        Some(frac) => {
            all_digits(int_part) && all_digits(frac) && !(int_part.is_empty() && frac.is_empty())
        }
        None => !int_part.is_empty() && all_digits(int_part),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
        !digits.is_empty() && all_digits(digits)
    });
    if !mantissa_ok || !exponent_ok || (frac_part.is_none() && exponent.is_none()) {
        return None;
    }
    Some(text.parse::<f64>().map_err(|e| format!("{text}: {e}")))
}

/// Resolves an untagged plain scalar (YAML 1.2 core schema).
fn resolve_plain(text: &str) -> Result<Value, String> {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = resolve_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = resolve_int(text) {
        return n.map(Value::Number);
    }
    if let Some(f) = resolve_float(text) {
        let f = f?;
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("{text} is not a finite number"));
    }
    Ok(Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> BTreeMap<String, String> {
        [("USER".to_string(), "ada".to_string())].into()
    }

    fn one(source: &str) -> Value {
        let mut docs = parse_documents(source, &env()).unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[test]
    fn core_schema_typing() {
        let v = one(
            "a: 1\nb: -2\nc: 1.5\nd: true\ne: null\nf: ~\ng:\nh: '1'\ni: \"true\"\nj: 0x1f\nk: 0o17\nl: 1e3\nm: yes\nn: 0755\no: 1.2.3\n",
        );
        assert_eq!(
            v,
            json!({"a": 1, "b": -2, "c": 1.5, "d": true, "e": null, "f": null, "g": null,
                   "h": "1", "i": "true", "j": 31, "k": 15, "l": 1000.0, "m": "yes",
                   "n": 755, "o": "1.2.3"})
        );
    }

    #[test]
    fn json_documents_parse_too() {
        let v = one(r#"{"config": {"Env": ["A=1"], "ArgsEscaped": false, "n": 3}}"#);
        assert_eq!(
            v,
            json!({"config": {"Env": ["A=1"], "ArgsEscaped": false, "n": 3}})
        );
    }

    #[test]
    fn only_double_quoted_values_are_expanded() {
        let v =
            one("a: \"hi $USER\"\nb: 'hi $USER'\nc: hi $USER\nd: |\n  hi $USER\n\"$USER\": x\n");
        assert_eq!(
            v,
            json!({"a": "hi ada", "b": "hi $USER", "c": "hi $USER", "d": "hi $USER\n", "$USER": "x"})
        );
    }

    #[test]
    fn expansion_errors_have_positions() {
        let err = parse_documents("a: 1\nb: \"x $NOPE\"\n", &env()).unwrap_err();
        match &err {
            MergeError::Variable {
                line,
                column,
                message,
            } => {
                assert_eq!((*line, *column), (2, 4));
                assert!(message.contains("NOPE"));
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = parse_documents("a: 1\nb: [1, 2\nc: 3\n", &env()).unwrap_err();
        let MergeError::Syntax { line, .. } = err else {
            panic!("{err}")
        };
        assert!(line >= 2, "line {line}");
        let err = parse_documents("a: b: c\n", &env()).unwrap_err();
        assert!(matches!(err, MergeError::Syntax { line: 1, .. }), "{err}");
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = one("base: &b {x: 1, y: \"$USER\"}\nother:\n  <<: *b\n  y: 2\nlist: [*b]\n");
        assert_eq!(
            v,
            json!({"base": {"x": 1, "y": "ada"}, "other": {"x": 1, "y": 2}, "list": [{"x": 1, "y": "ada"}]})
        );
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse_documents("a: 1\na: 2\n", &env()).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
        assert!(matches!(
            err,
            MergeError::Semantic {
                line: 2,
                column: 1,
                ..
            }
        ));
    }

    #[test]
    fn tags() {
        let v = one("a: !!str 1\nb: !!int \"7\"\nc: !!float 2\n");
        assert_eq!(v, json!({"a": "1", "b": 7, "c": 2.0}));
        assert!(parse_documents("a: !custom x\n", &env()).is_err());
    }

    #[test]
    fn empty_and_multiple_documents() {
        assert_eq!(parse_documents("", &env()).unwrap(), Vec::<Value>::new());
        let docs = parse_documents("a: 1\n---\nb: 2\n", &env()).unwrap();
        assert_eq!(docs, [json!({"a": 1}), json!({"b": 2})]);
    }

    #[test]
    fn infinity_is_rejected() {
        assert!(parse_documents("a: .inf\n", &env()).is_err());
        assert_eq!(one("a: '.inf'\n"), json!({"a": ".inf"}));
    }
}
