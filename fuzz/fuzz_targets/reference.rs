//! Image references, repository names, tags and digests: parsing never panics, and whatever
//! parses prints back to something that parses to the same value.
#![no_main]

use berth_oci::{Digest, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<Reference>() {
        let again: Reference = r
            .to_string()
            .parse()
            .expect("a parsed reference prints to a valid one");
        assert_eq!(again, r);
        assert!(berth_oci::validate_repository(&r.repository).is_ok());
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d));
    }
    let _ = berth_oci::validate_repository(s);
    let _ = berth_oci::validate_tag(s);
});
