//! Request header parsing and response header building: the pure functions behind the
//! handlers, public so that they can be fuzzed.

use http::HeaderMap;

/// A requested byte range: (first, last), inclusive; `(None, Some(n))` is the last n bytes.
pub type RangeSpec = (Option<u64>, Option<u64>);

/// Parses a `Range: bytes=...` header into (first, last) with the suffix form `(None, Some(n))`.
/// Returns `Err(())` for a malformed single range; multiple ranges are not supported and give
/// `Ok(None)` (the whole blob is served, which RFC 9110 allows).
#[allow(clippy::result_unit_err)]
pub fn blob_range(h: &HeaderMap) -> Result<Option<RangeSpec>, ()> {
    let Some(v) = h.get(http::header::RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| ())?.trim();
    let spec = s.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let num = |x: &str| -> Result<Option<u64>, ()> {
        let x = x.trim();
        if x.is_empty() {
            Ok(None)
        } else {
            x.parse::<u64>().map(Some).map_err(|_| ())
        }
    };
    let (first, last) = (num(a)?, num(b)?);
    if first.is_none() && last.is_none() {
        return Err(());
    }
    if let (Some(f), Some(l)) = (first, last)
        && f > l
    {
        return Err(());
    }
    Ok(Some((first, last)))
}

/// Parses an upload chunk's `Content-Range: <start>-<end>` (also accepting a `bytes ` prefix).
#[allow(clippy::result_unit_err)]
pub fn upload_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = h.get(http::header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| ())?.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or(())?;
    let a = a.trim().parse::<u64>().map_err(|_| ())?;
    let b = b.trim().parse::<u64>().map_err(|_| ())?;
    // The chunk's length, `b - a + 1`, must be a number too (`0-18446744073709551615` is not).
    if b < a || b == u64::MAX {
        return Err(());
    }
    Ok(Some((a, b)))
}

/// The request's `Content-Length`, if present and valid.
pub fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Builds a `Location` value for `path`: absolute when forwarded headers are trusted and present.
pub fn location(h: &HeaderMap, trust_forwarded: bool, path: &str) -> String {
    if trust_forwarded {
        let get = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(',').next().unwrap_or("").trim().to_owned())
        };
        if let Some(host) = get("x-forwarded-host").filter(|s| !s.is_empty()) {
            let proto = get("x-forwarded-proto")
                .filter(|s| s == "http" || s == "https")
                .unwrap_or_else(|| "https".into());
            return format!("{proto}://{host}{path}");
        }
    }
    path.to_owned()
}

/// Whether the `Accept` header admits a manifest of `media_type`. No header, or a wildcard,
/// admits everything.
pub fn accepts(h: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for v in h.get_all(http::header::ACCEPT) {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            any = true;
            if t == "*/*" || t == "application/*" || t.eq_ignore_ascii_case(media_type) {
                return true;
            }
        }
    }
    !any
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(k: &'static str, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(k, v.parse().unwrap());
        h
    }

    #[test]
    fn ranges() {
        assert_eq!(
            blob_range(&hm("range", "bytes=0-9")),
            Ok(Some((Some(0), Some(9))))
        );
        assert_eq!(
            blob_range(&hm("range", "bytes=5-")),
            Ok(Some((Some(5), None)))
        );
        assert_eq!(
            blob_range(&hm("range", "bytes=-5")),
            Ok(Some((None, Some(5))))
        );
        assert!(blob_range(&hm("range", "bytes=9-1")).is_err());
        assert!(blob_range(&hm("range", "items=1-2")).is_err());
        assert_eq!(
            upload_range(&hm("content-range", "0-99")),
            Ok(Some((0, 99)))
        );
        assert_eq!(
            upload_range(&hm("content-range", "bytes 10-19/*")),
            Ok(Some((10, 19)))
        );
        assert!(upload_range(&hm("content-range", "5-1")).is_err());
        // A range whose length, last - first + 1, is no u64.
        assert!(upload_range(&hm("content-range", "0-18446744073709551615")).is_err());
    }

    #[test]
    fn accept() {
        assert!(accepts(&HeaderMap::new(), "x"));
        assert!(accepts(&hm("accept", "a, x;q=0.5"), "x"));
        assert!(!accepts(&hm("accept", "a, b"), "x"));
        assert!(accepts(&hm("accept", "*/*"), "x"));
    }

    #[test]
    fn locations() {
        let mut h = hm("x-forwarded-host", "reg.example.com");
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(location(&h, true, "/v2/x"), "https://reg.example.com/v2/x");
        assert_eq!(location(&h, false, "/v2/x"), "/v2/x");
    }
}
