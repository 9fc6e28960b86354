//! `Range` and `Content-Range` headers: never panic, and what parses is a usable range.
#![no_main]

use berth_server::headers::{blob_range, content_length, upload_range};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = HeaderMap::new();
    h.insert(header::RANGE, v.clone());
    h.insert(header::CONTENT_RANGE, v.clone());
    h.insert(header::CONTENT_LENGTH, v);
    if let Ok(Some((first, last))) = blob_range(&h) {
        assert!(first.is_some() || last.is_some());
        if let (Some(f), Some(l)) = (first, last) {
            assert!(f <= l);
        }
    }
    if let Ok(Some((a, b))) = upload_range(&h) {
        assert!(a <= b);
        // The chunk's length is a number.
        assert!((b - a).checked_add(1).is_some());
    }
    let _ = content_length(&h);
});
