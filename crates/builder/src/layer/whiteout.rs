//! OCI whiteouts: entries that delete paths of lower layers.
//!
//! See the OCI image spec, "Representing Changes" / "Whiteouts": a file named
//! `.wh.<name>` deletes `<name>` from the same directory of lower layers, and a file named
//! `.wh..wh..opq` in a directory hides everything lower layers had in that directory.

use super::TarError;

/// Prefix of a whiteout file name.
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of an opaque-directory whiteout.
pub(crate) const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// A whiteout to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Whiteout {
    /// Tar entry path (relative, no leading `/`).
    pub entry: Vec<u8>,
    /// The path as the caller gave it, for error messages.
    pub original: String,
}

/// Turns absolute in-image paths into whiteout entries (sorted, without duplicates).
///
/// `/a/b` -> `a/.wh.b`; `/a/b/*` -> `a/b/.wh..wh..opq`; `/*` -> `.wh..wh..opq`.
pub(crate) fn whiteouts(remove: &[String]) -> Result<Vec<Whiteout>, TarError> {
    let mut out = Vec::with_capacity(remove.len());
    for original in remove {
        let invalid = |reason: &str| TarError::InvalidWhiteout {
            path: original.clone(),
            reason: reason.to_string(),
        };
        let Some(rest) = original.strip_prefix('/') else {
            return Err(invalid(
                "must be an absolute path inside the image, like /etc/motd",
            ));
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in rest.split('/') {
            match part {
                "" => {}
                "." | ".." => {
                    return Err(invalid("`.` and `..` components are not allowed"));
                }
                _ => parts.push(part),
            }
        }
        let Some(last) = parts.pop() else {
            return Err(invalid(
                "cannot remove `/` itself; use `/*` to hide everything lower layers had",
            ));
        };
        if parts.iter().any(|p| p.contains(['*', '?', '['])) {
            return Err(invalid(
                "wildcards are only allowed as a final `/*` (opaque directory)",
            ));
        }
        let name = if last == "*" {
            OPAQUE_WHITEOUT.to_string()
        } else if last.contains(['*', '?', '[']) {
            return Err(invalid(
                "wildcards are only allowed as a final `/*` (opaque directory)",
            ));
        } else if last.starts_with(WHITEOUT_PREFIX) {
            return Err(invalid(
                "names starting with `.wh.` are reserved for whiteouts",
            ));
        } else {
            format!("{WHITEOUT_PREFIX}{last}")
        };
        parts.push(&name);
        out.push(Whiteout {
            entry: parts.join("/").into_bytes(),
            original: original.clone(),
        });
    }
    out.sort_by(|a, b| a.entry.cmp(&b.entry));
    out.dedup_by(|a, b| a.entry == b.entry);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(paths: &[&str]) -> Vec<String> {
        let paths: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
        whiteouts(&paths)
            .unwrap()
            .into_iter()
            .map(|w| String::from_utf8(w.entry).unwrap())
            .collect()
    }

    #[test]
    fn file_whiteouts_go_in_the_parent_directory() {
        assert_eq!(
            entries(&["/etc/motd", "/top", "/var/lib/apt/lists/"]),
            [".wh.top", "etc/.wh.motd", "var/lib/apt/.wh.lists"]
        );
    }

    #[test]
    fn opaque_whiteouts() {
        assert_eq!(entries(&["/var/cache/*"]), ["var/cache/.wh..wh..opq"]);
        assert_eq!(entries(&["/*"]), [".wh..wh..opq"]);
    }

    #[test]
    fn duplicates_collapse() {
        assert_eq!(entries(&["/a/b", "//a//b/"]), ["a/.wh.b"]);
    }

    #[test]
    fn invalid_paths_are_rejected_with_the_reason() {
        for (bad, why) in [
            ("etc/motd", "absolute"),
            ("/", "`/*`"),
            ("/a/../b", "`..`"),
            ("/a/*/b", "wildcards"),
            ("/a/.wh.b", "reserved"),
        ] {
            let err = whiteouts(&[bad.to_string()]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(why), "{bad}: {msg}");
            assert!(msg.contains(bad), "{bad}: {msg}");
        }
    }
}
