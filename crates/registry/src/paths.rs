//! Keys of CNCF Distribution's storage layout, so that Berth and `registry:2` share one tree.
//!
//! Every function takes names and digests that were already validated, so a key can only hold
//! lowercase letters, digits, separators and hex.

use berth_oci::Digest;

/// Root of Distribution's v2 tree.
pub const ROOT: &str = "docker/registry/v2";

/// `blobs/<alg>/<hex[0:2]>/<hex>/data`.
pub fn blob_data(d: &Digest) -> String {
    format!(
        "{ROOT}/blobs/{}/{}/{}/data",
        d.algorithm(),
        &d.hex()[..2],
        d.hex()
    )
}

/// The folder holding all repositories.
pub fn repositories() -> String {
    format!("{ROOT}/repositories")
}

/// A repository's folder.
pub fn repo(name: &str) -> String {
    format!("{ROOT}/repositories/{name}")
}

/// The link that makes a blob part of a repository.
pub fn layer_link(name: &str, d: &Digest) -> String {
    format!("{}/_layers/{}/{}/link", repo(name), d.algorithm(), d.hex())
}

/// The link that makes a manifest revision part of a repository.
pub fn revision_link(name: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}/link",
        repo(name),
        d.algorithm(),
        d.hex()
    )
}

/// Berth's record of the `Content-Type` a manifest was pushed with (Distribution ignores it).
pub fn revision_content_type(name: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}/berth-content-type",
        repo(name),
        d.algorithm(),
        d.hex()
    )
}

/// The folder of a manifest revision.
pub fn revision_dir(name: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/revisions/{}/{}",
        repo(name),
        d.algorithm(),
        d.hex()
    )
}

/// The folder of all tags.
pub fn tags(name: &str) -> String {
    format!("{}/_manifests/tags", repo(name))
}

/// A tag's folder.
pub fn tag_dir(name: &str, tag: &str) -> String {
    format!("{}/_manifests/tags/{tag}", repo(name))
}

/// The link a tag currently points through.
pub fn tag_current(name: &str, tag: &str) -> String {
    format!("{}/_manifests/tags/{tag}/current/link", repo(name))
}

/// The tag's history index entry for a digest.
pub fn tag_index(name: &str, tag: &str, d: &Digest) -> String {
    format!(
        "{}/_manifests/tags/{tag}/index/{}/{}/link",
        repo(name),
        d.algorithm(),
        d.hex()
    )
}

/// An upload's folder.
pub fn upload_dir(name: &str, id: &str) -> String {
    format!("{}/_uploads/{id}", repo(name))
}

/// An upload's data.
pub fn upload_data(name: &str, id: &str) -> String {
    format!("{}/_uploads/{id}/data", repo(name))
}

/// An upload's start time (RFC 3339), as Distribution writes it.
pub fn upload_started(name: &str, id: &str) -> String {
    format!("{}/_uploads/{id}/startedat", repo(name))
}

/// The folder of Berth's saved SHA-256 states of an upload. Distribution keeps Go's own
/// serialization under `hashstates/sha256`; Berth's states are in another format, so they live
/// under their own name and Distribution, not finding its own, re-hashes the data instead.
pub fn upload_hashstates(name: &str, id: &str) -> String {
    format!("{}/_uploads/{id}/hashstates/berth-sha256", repo(name))
}

/// Referrers of a subject in a repository: one descriptor file per referring manifest.
pub fn referrers_dir(name: &str, subject: &Digest) -> String {
    format!(
        "{}/_berth/referrers/{}/{}",
        repo(name),
        subject.algorithm(),
        subject.hex()
    )
}

/// One referrer's descriptor file.
pub fn referrer(name: &str, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}-{}.json",
        referrers_dir(name, subject),
        referrer.algorithm(),
        referrer.hex()
    )
}
