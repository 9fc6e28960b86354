//! The YAML/JSON config merge: any patch text merges or is refused with an error, never a
//! panic; on error the config is unchanged.
#![no_main]

use std::collections::BTreeMap;

use berth_builder::config_merge::merge_document;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(patch) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Labels": {"a": "b"}, "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": []
    });
    let before = config.clone();
    let env = BTreeMap::from([("HOME".to_owned(), "/root".to_owned())]);
    if merge_document(&mut config, patch, &env).is_err() {
        assert_eq!(config, before);
    }
});
