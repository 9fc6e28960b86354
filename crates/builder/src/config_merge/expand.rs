//! `$VAR` / `${VAR}` expansion for double-quoted YAML values.

use std::collections::BTreeMap;

/// Expands variables in `text` from `env`.
///
/// - `$NAME` and `${NAME}`: the value of `NAME` (`[A-Za-z_][A-Za-z0-9_]*`); an unset
///   variable is an error (a typo must not silently become an empty string);
/// - `${NAME:-default}`: `default` when `NAME` is unset or empty;
///   `${NAME-default}`: `default` when `NAME` is unset (the default is not expanded);
/// - `$$`: a literal `$`;
/// - a `$` not followed by a name, `{` or `$` stays as it is (`"costs 5$"`).
pub(crate) fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or_else(|| {
                format!("`${{` without a closing `}}` in {text:?}; write `$$` for a literal `$`")
            })?;
            out.push_str(&braced(&inner[..end], env)?);
            rest = &inner[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                out.push('$');
                rest = after;
            } else {
                out.push_str(lookup(&after[..len], env)?);
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Length of the variable name at the start of `s` (0 if there is none).
fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return 0;
    }
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

fn lookup<'a>(name: &str, env: &'a BTreeMap<String, String>) -> Result<&'a str, String> {
    env.get(name).map(String::as_str).ok_or_else(|| {
        format!(
            "variable {name} is not set; set it, give a default with ${{{name}:-default}}, or write $$ for a literal $"
        )
    })
}

/// The inside of `${...}`.
fn braced(inner: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let len = name_len(inner);
    if len == 0 {
        return Err(format!(
            "`${{{inner}}}` does not start with a variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    let (name, modifier) = inner.split_at(len);
    if modifier.is_empty() {
        return lookup(name, env).map(str::to_string);
    }
    let value = env.get(name);
    if let Some(default) = modifier.strip_prefix(":-") {
        return Ok(match value {
            Some(v) if !v.is_empty() => v.clone(),
            _ => default.to_string(),
        });
    }
    if let Some(default) = modifier.strip_prefix('-') {
        return Ok(value.cloned().unwrap_or_else(|| default.to_string()));
    }
    Err(format!(
        "`${{{inner}}}`: only `${{NAME}}`, `${{NAME:-default}}` and `${{NAME-default}}` are supported"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("HOME", "/root"), ("EMPTY", ""), ("V_1", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn simple_and_braced() {
        assert_eq!(expand("$HOME/bin", &env()).unwrap(), "/root/bin");
        assert_eq!(expand("${HOME}bin", &env()).unwrap(), "/rootbin");
        assert_eq!(expand("a$V_1-b", &env()).unwrap(), "ax-b");
        assert_eq!(expand("no vars", &env()).unwrap(), "no vars");
    }

    #[test]
    fn defaults() {
        assert_eq!(expand("${NOPE:-dflt}", &env()).unwrap(), "dflt");
        assert_eq!(expand("${EMPTY:-dflt}", &env()).unwrap(), "dflt");
        assert_eq!(expand("${EMPTY-dflt}", &env()).unwrap(), "");
        assert_eq!(expand("${NOPE-a b}", &env()).unwrap(), "a b");
    }

    #[test]
    fn literal_dollars() {
        assert_eq!(expand("$$HOME", &env()).unwrap(), "$HOME");
        assert_eq!(expand("5$ or $1 or $", &env()).unwrap(), "5$ or $1 or $");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = expand("$NOPE", &env()).unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
        assert!(expand("${HOME", &env()).unwrap_err().contains("closing"));
        assert!(expand("${1x}", &env()).is_err());
        assert!(expand("${HOME:?x}", &env()).is_err());
    }
}
