//! Parsing of `/v2/<name>/<endpoint>` paths, where `<name>` may contain slashes.

/// The endpoint a `/v2/` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags,
    /// `/v2/<name>/manifests/<reference>`
    Manifest(String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(String),
    /// `/v2/<name>/blobs/uploads/`
    Uploads,
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(String),
}

/// Splits the raw (still percent-encoded) part of a request path after `/v2/` into repository
/// name and endpoint, reading it exactly as the authorization layer does
/// (`berth_auth::routes::required_access`): the path is split at its literal slashes, and the
/// endpoint words (`manifests`, `blobs`, `uploads`, `tags/list`, `referrers`, `_catalog`) and the
/// repository name are taken as they are. Only the last segment (reference, digest or upload id)
/// is percent-decoded, so an encoded `%2F` stays inside it. Were the words decoded too,
/// `manifest%73` would be served as `manifests` while the authorization layer, which does not
/// know it, let it through unchecked. Names and decoded values are validated by the caller
/// (`%2e%2e` decodes to `..`, which no tag, digest or upload id accepts; a name with `%` is
/// invalid).
pub fn parse_raw(raw: &str) -> Option<(String, Endpoint)> {
    let (name, ep) = parse(raw)?;
    let ep = match ep {
        Endpoint::Manifest(r) => Endpoint::Manifest(percent_decode(&r)),
        Endpoint::Blob(d) => Endpoint::Blob(percent_decode(&d)),
        Endpoint::Upload(u) => Endpoint::Upload(percent_decode(&u)),
        Endpoint::Referrers(d) => Endpoint::Referrers(percent_decode(&d)),
        other => other,
    };
    Some((name, ep))
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are, invalid UTF-8 is replaced.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |x: u8| (x as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits the part after `/v2/`, already decoded, into repository name and endpoint.
pub fn parse(rest: &str) -> Option<(String, Endpoint)> {
    parse_segments(&rest.split('/').collect::<Vec<_>>())
}

fn parse_segments(segs: &[&str]) -> Option<(String, Endpoint)> {
    if segs == ["_catalog"] {
        return Some((String::new(), Endpoint::Catalog));
    }
    let n = segs.len();
    let name = |k: usize| -> Option<String> { (n > k).then(|| segs[..n - k].join("/")) };
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some((name(2)?, Endpoint::Tags));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        let ep = if id.is_empty() {
            Endpoint::Uploads
        } else {
            Endpoint::Upload(id.to_owned())
        };
        return Some((name(3)?, ep));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some((name(2)?, Endpoint::Uploads));
    }
    if n >= 3 && !segs[n - 1].is_empty() {
        let arg = segs[n - 1].to_owned();
        match segs[n - 2] {
            "manifests" => return Some((name(2)?, Endpoint::Manifest(arg))),
            "blobs" => return Some((name(2)?, Endpoint::Blob(arg))),
            "referrers" => return Some((name(2)?, Endpoint::Referrers(arg))),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse("a/b/tags/list"), Some(("a/b".into(), Endpoint::Tags)));
        assert_eq!(
            parse("a/manifests/latest"),
            Some(("a".into(), Endpoint::Manifest("latest".into())))
        );
        assert_eq!(
            parse("x/blobs/uploads/"),
            Some(("x".into(), Endpoint::Uploads))
        );
        assert_eq!(
            parse("x/blobs/uploads"),
            Some(("x".into(), Endpoint::Uploads))
        );
        assert_eq!(
            parse("x/y/blobs/uploads/abc"),
            Some(("x/y".into(), Endpoint::Upload("abc".into())))
        );
        assert_eq!(
            parse("blobs/blobs/sha256:1"),
            Some(("blobs".into(), Endpoint::Blob("sha256:1".into())))
        );
        assert_eq!(
            parse("r/referrers/sha256:1"),
            Some(("r".into(), Endpoint::Referrers("sha256:1".into())))
        );
        assert_eq!(parse("_catalog"), Some((String::new(), Endpoint::Catalog)));
        assert_eq!(parse("manifests/latest"), None);
        assert_eq!(parse("a/unknown/x"), None);
        assert_eq!(parse("a/manifests/"), None);
    }

    #[test]
    fn raw_paths_are_split_before_decoding() {
        assert_eq!(
            parse_raw("a%2Fb/tags/list"),
            Some(("a%2Fb".into(), Endpoint::Tags)),
            "names are never decoded"
        );
        assert_eq!(
            parse_raw("%2e%2e/manifests/v1"),
            Some(("%2e%2e".into(), Endpoint::Manifest("v1".into())))
        );
        assert_eq!(parse_raw("a/manifest%73/v1"), None, "words are not decoded");
        assert_eq!(parse_raw("a/blob%73/uploads/"), None);
        assert_eq!(parse_raw("a/tags/lis%74"), None);
        assert_eq!(parse_raw("%5Fcatalog"), None);
        assert_eq!(
            parse_raw("x/blobs/uploads/..%2F..%2Fy"),
            Some(("x".into(), Endpoint::Upload("../../y".into())))
        );
        assert_eq!(
            parse_raw("x/manifests/sha256%3Aab"),
            Some(("x".into(), Endpoint::Manifest("sha256:ab".into())))
        );
        assert_eq!(
            parse_raw("x/manifests/a%2Fb"),
            Some(("x".into(), Endpoint::Manifest("a/b".into())))
        );
        assert_eq!(
            parse_raw("_catalog"),
            Some((String::new(), Endpoint::Catalog))
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
    /// Every request the handlers serve is one the authorization layer checks, for the same
    /// repository: for each path the router recognizes, `required_access` names scopes on the
    /// router's repository (or refuses the name), never "not a registry route".
    #[test]
    fn every_served_route_is_authorized_for_the_same_repository() {
        use berth_auth::routes::{RouteAccess, required_access};
        use http::Method;
        let words = [
            "a",
            "manifests",
            "manifest%73",
            "blobs",
            "blob%73",
            "uploads",
            "upload%73",
            "tags",
            "list",
            "lis%74",
            "referrers",
            "_catalog",
            "%5Fcatalog",
            "",
        ];
        let served = |ep: &Endpoint, m: &Method| match ep {
            Endpoint::Catalog | Endpoint::Tags | Endpoint::Referrers(_) => *m == Method::GET,
            Endpoint::Manifest(_) => {
                [Method::GET, Method::HEAD, Method::PUT, Method::DELETE].contains(m)
            }
            Endpoint::Blob(_) => [Method::GET, Method::HEAD, Method::DELETE].contains(m),
            Endpoint::Uploads => *m == Method::POST,
            Endpoint::Upload(_) => {
                [Method::GET, Method::PATCH, Method::PUT, Method::DELETE].contains(m)
            }
        };
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
        ];
        // Every path of one to four of these segments.
        let mut paths: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let mut last = paths.clone();
        for _ in 0..3 {
            last = last
                .iter()
                .flat_map(|p| words.iter().map(move |w| format!("{p}/{w}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        paths.sort();
        paths.dedup();
        let mut checked = 0;
        for path in &paths {
            let Some((name, ep)) = parse_raw(path) else {
                continue;
            };
            for m in methods.iter().filter(|m| served(&ep, m)) {
                checked += 1;
                match required_access(m, &format!("/v2/{path}"), None) {
                    Ok(RouteAccess::Scopes(scopes)) => {
                        if ep != Endpoint::Catalog {
                            assert!(
                                !scopes.is_empty() && scopes.iter().all(|s| s.name == name),
                                "{m} /v2/{path}: served for {name:?}, authorized as {scopes:?}"
                            );
                        }
                    }
                    Ok(RouteAccess::Mount { .. }) => unreachable!("no query"),
                    Ok(other) => panic!("{m} /v2/{path} is served as {ep:?} but {other:?}"),
                    Err(_) => {} // refused: invalid name
                }
            }
        }
        assert!(
            checked > 100,
            "only {checked} served requests were generated"
        );
    }
}
