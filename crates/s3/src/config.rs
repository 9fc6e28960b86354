//! Settings of the S3 backend, named after CNCF Distribution's `storage.s3` keys.

use std::path::Path;

/// Distribution's default part size for multipart uploads (`storage.s3.chunksize`).
pub const DEFAULT_CHUNK_SIZE: usize = 10 << 20;
/// S3's smallest part (all but the last part of a multipart upload must be at least this big).
pub const MIN_CHUNK_SIZE: usize = 5 << 20;

/// Where the bucket is and how to reach it.
#[derive(Clone, Default)]
pub struct S3Config {
    /// Bucket name (`bucket`).
    pub bucket: String,
    /// Region (`region`); S3-compatible stores accept any name they were set up with.
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible service (`regionendpoint`), e.g. `http://127.0.0.1:3900`.
    pub endpoint: Option<String>,
    /// Path-style requests (`forcepathstyle`): `endpoint/bucket/key` rather than
    /// `bucket.endpoint/key`. Most self-hosted stores want this.
    pub force_path_style: bool,
    /// Allow plain HTTP (`secure: false`).
    pub allow_http: bool,
    /// Accept any TLS certificate from the store (`skipverify`).
    pub skip_verify: bool,
    /// A prefix every key is stored under (`rootdirectory`).
    pub root_directory: String,
    /// Access key id (`accesskey`). When it is absent, `object_store` looks for credentials in
    /// [`S3Config::aws_settings`] and then in the instance's metadata service.
    pub access_key: Option<String>,
    /// Secret key (`secretkey`).
    pub secret_key: Option<String>,
    /// Session token (`sessiontoken`).
    pub session_token: Option<String>,
    /// Part size of multipart uploads (`chunksize`), at least 5 MiB.
    pub chunk_size: usize,
    /// `AWS_*` settings in `object_store`'s spelling (`AWS_REGION`, `AWS_WEB_IDENTITY_TOKEN_FILE`,
    /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, ...), applied before the keys above so that the
    /// configuration file wins. The library reads no environment variable: a caller that wants
    /// the AWS environment honoured passes it here (the `berth` binary does).
    pub aws_settings: Vec<(String, String)>,
}

impl std::fmt::Debug for S3Config {
    // Hand-written so that the secret key and session token never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("allow_http", &self.allow_http)
            .field("root_directory", &self.root_directory)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("chunk_size", &self.chunk_size)
            // Keys only: values may be secrets.
            .field(
                "aws_settings",
                &self.aws_settings.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Credentials read from the shared AWS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCredentials {
    /// `aws_access_key_id`.
    pub access_key: String,
    /// `aws_secret_access_key`.
    pub secret_key: String,
    /// `aws_session_token`.
    pub session_token: Option<String>,
}

/// Reads `profile` from the AWS shared credentials file at `path` (the AWS CLI's
/// `~/.aws/credentials`); `None` when the file or the profile is missing. `object_store` reads
/// credentials from its settings and from instance metadata but not from this file; the format
/// is a small INI dialect, parsed here. The caller picks the path and profile (the `berth`
/// binary honours `AWS_SHARED_CREDENTIALS_FILE` and `AWS_PROFILE`).
pub fn credentials_from_aws_file(path: &Path, profile: &str) -> Option<FileCredentials> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_credentials(&text, profile)
}

/// Parses one profile of an AWS credentials file.
pub fn parse_credentials(text: &str, profile: &str) -> Option<FileCredentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            in_profile = name == profile || name.strip_prefix("profile ") == Some(profile);
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(FileCredentials {
        access_key: id?,
        secret_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_profile() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[ci]\n# c\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        assert_eq!(
            parse_credentials(text, "default"),
            Some(FileCredentials {
                access_key: "A".into(),
                secret_key: "B".into(),
                session_token: None
            })
        );
        let ci = parse_credentials(text, "ci").unwrap();
        assert_eq!(
            (ci.access_key.as_str(), ci.session_token.as_deref()),
            ("C", Some("T"))
        );
        assert_eq!(parse_credentials(text, "none"), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = S3Config {
            secret_key: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
