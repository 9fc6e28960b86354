//! Platforms (`linux/arm64/v8`): parsed from the command line, matched against the entries of
//! an image index, and written into new image configs.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// A platform such as `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in OCI/Go spelling, e.g. `amd64`.
    pub architecture: String,
    /// Variant, e.g. `v8`. In a platform that selects, `None` matches any variant.
    pub variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// Not `os/arch` or `os/arch/variant` with every part non-empty.
    #[error("bad platform {0:?}: expected os/arch[/variant], such as linux/amd64")]
    Malformed(String),
}

impl Platform {
    /// Parses `os/arch[/variant]`; every given part must be non-empty.
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError::Malformed(s.to_owned()));
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }

    /// The platform this program was compiled for, in OCI/Go spelling (`linux`, since the
    /// images Berth builds are Linux images).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// The platform of an index entry (its `platform` object), if it names an OS and an
    /// architecture.
    pub fn of(platform: Option<&Value>) -> Option<Self> {
        let p = platform?;
        Some(Platform {
            os: p.get("os")?.as_str()?.to_owned(),
            architecture: p.get("architecture")?.as_str()?.to_owned(),
            variant: p.get("variant").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Whether `other` is a platform this one selects: same OS and architecture, and the same
    /// variant unless this one names none.
    pub fn matches_platform(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }

    /// Whether an index entry's `platform` object is one this platform selects (see
    /// [`Platform::matches_platform`]); an entry without a platform matches nothing.
    pub fn matches(&self, platform: Option<&Value>) -> bool {
        Platform::of(platform).is_some_and(|p| self.matches_platform(&p))
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, PlatformError> {
        Platform::parse(s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(Platform::parse("linux/amd64").unwrap().variant, None);
        for bad in ["linux", "/amd64", "linux//", "linux/amd64/", "a/b/c/d", ""] {
            let e = Platform::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("expected os/arch[/variant]"),
                "{bad}"
            );
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        let v = serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"});
        assert!(p.matches(Some(&v)));
        let any: Platform = "linux/arm64".parse().unwrap();
        assert!(any.matches(Some(&v)));
        assert!(!"linux/amd64".parse::<Platform>().unwrap().matches(Some(&v)));
        assert!(!p.matches(None));
        assert!(!p.matches(Some(&serde_json::json!({"os":"linux"}))));
        let v7: Platform = "linux/arm64/v7".parse().unwrap();
        assert!(!v7.matches(Some(&v)));
        let of = Platform::of(Some(&v)).unwrap();
        assert!(any.matches_platform(&of));
        assert!(p.matches_platform(&of));
        assert!(
            !p.matches_platform(&any),
            "a variant is not matched by none"
        );
        assert!(!v7.matches_platform(&of));
    }

    #[test]
    fn host_is_linux() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.is_empty());
        assert_ne!(h.architecture, "x86_64");
    }
}
