//! Repository names and tags, validated by the OCI Distribution Spec's grammar.
//!
//! Validation is hand-written rather than a regex so that this crate stays dependency-light and
//! so that a name can never contain anything that would escape a storage root (`..`, `/x`, `%2e`).

/// Why a repository name or tag is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The repository name breaks the grammar.
    #[error(
        "invalid repository name {0:?}: use lowercase letters, digits and separators (. _ __ -) in path components joined by /"
    )]
    Repository(String),
    /// The tag breaks the grammar.
    #[error(
        "invalid tag {0:?}: a tag is 1 to 128 characters of [A-Za-z0-9_.-] and does not start with . or -"
    )]
    Tag(String),
}

/// Longest repository name accepted (the spec's recommendation for path length).
pub const MAX_NAME_LEN: usize = 255;

fn component_ok(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A run of separators.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Validates a repository name: `<component>(/<component>)*`.
pub fn validate_repository(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.split('/').all(component_ok) {
        return Err(NameError::Repository(name.to_owned()));
    }
    Ok(())
}

/// Validates a tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Tag(tag.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for good in [
            "a",
            "library/ubuntu",
            "a/b/c",
            "my-app",
            "a__b",
            "a.b",
            "a---b",
            "x0/y_1",
        ] {
            assert!(validate_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "..", "a/../b", "a/./b", "%2e%2e", "a_", "a___b", "-a",
            "a b", "a:b", "a@b", ".a",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
        assert!(validate_repository(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        for good in ["latest", "v1.0", "_x", "A-b.c_d", &"t".repeat(128)] {
            assert!(validate_tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129), "sha256:abc"] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
