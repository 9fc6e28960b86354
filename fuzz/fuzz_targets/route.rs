//! The `/v2/` route grammar: any path parses or is refused without panicking, and a parsed
//! route names a repository only when the path holds one.
#![no_main]

use berth_oci::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(r) = Route::parse(path) {
        if let Some(name) = r.name() {
            assert!(!name.is_empty());
            assert!(path.contains(name));
        }
        let _ = format!("{r:?}");
    }
});
