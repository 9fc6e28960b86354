//! Command-line values parsed into typed ones: references, registry hosts, byte sizes.
//! A value that does not parse is a usage failure (exit code 2).

use berth_oci::Reference;

use crate::exit::Failure;

/// An image reference, such as `127.0.0.1:5000/team/app:1`.
pub fn parse_ref(s: &str) -> Result<Reference, Failure> {
    s.parse::<Reference>()
        .map_err(|e| Failure::usage(format!("{e} (in {s:?})")))
}

/// A registry host given alone (catalog, login): `host[:port]`, optionally with a scheme.
pub fn parse_host(s: &str) -> Result<String, Failure> {
    let h = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if h.is_empty() || h.contains('/') || h.contains(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "{s:?} is not a registry host: expected HOST[:PORT], such as 127.0.0.1:5000"
        )));
    }
    Ok(h.to_owned())
}

/// A size in bytes, with an optional K or M suffix.
pub fn parse_size(s: &str) -> Result<usize, Failure> {
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
            Failure::usage(format!(
                "bad size {s:?}: expected bytes, such as 4M or 65536"
            ))
        })
}

/// Whether the last path component of a reference string names a tag or digest explicitly.
pub fn has_explicit_tag(s: &str) -> bool {
    let last = s.rsplit('/').next().unwrap_or(s);
    last.contains(':') || last.contains('@')
}
