//! The behaviour every [`Storage`] backend must show, as one suite each backend's tests run.
//!
//! The functions panic on the first deviation, with a message naming the operation.

use bytes::Bytes;
use futures::StreamExt;

use crate::{ByteRange, Storage};

async fn collect(s: &dyn Storage, path: &str, range: Option<ByteRange>) -> Vec<u8> {
    let obj = s
        .get(path, range)
        .await
        .unwrap_or_else(|e| panic!("get {path}: {e}"));
    let mut out = Vec::new();
    let mut st = obj.stream;
    while let Some(chunk) = st.next().await {
        out.extend_from_slice(&chunk.expect("stream chunk"));
    }
    out
}

/// Runs every check below against `s`, which must be empty.
pub async fn run_all(s: &dyn Storage) {
    put_read_stat(s).await;
    ranges(s).await;
    list_delete(s).await;
    writer_append_and_resume(s).await;
    rename_replaces(s).await;
    concurrent_renames_into_a_new_folder(s).await;
    pruning_keeps_what_holds_anything(s).await;
    put_if_absent_has_one_winner(s).await;
    refuses_escapes(s).await;
}

/// `put_if_absent`: the first call creates, later ones (and concurrent ones) do not replace.
pub async fn put_if_absent_has_one_winner(s: &dyn Storage) {
    assert!(
        s.put_if_absent("once/key", Bytes::from_static(b"first"))
            .await
            .expect("create")
    );
    assert!(
        !s.put_if_absent("once/key", Bytes::from_static(b"second"))
            .await
            .expect("second create")
    );
    assert_eq!(&s.read("once/key", 100).await.expect("read")[..], b"first");
    let racers = (0..8).map(|i| s.put_if_absent("once/raced", Bytes::from(format!("racer {i}"))));
    let won = futures::future::join_all(racers).await;
    let winners = won.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(winners, 1, "{won:?}");
    let stored = s.read("once/raced", 100).await.expect("read raced");
    assert!(stored.starts_with(b"racer "));
}

/// `put` then `read`, `get`, `stat`, and overwrite.
pub async fn put_read_stat(s: &dyn Storage) {
    s.put("a/b/c", Bytes::from_static(b"hello"))
        .await
        .expect("put");
    assert_eq!(&s.read("a/b/c", 100).await.expect("read")[..], b"hello");
    assert_eq!(collect(s, "a/b/c", None).await, b"hello");
    let m = s.stat("a/b/c").await.expect("stat");
    assert_eq!((m.size, m.is_dir), (5, false));
    assert!(s.stat("a/b").await.expect("stat dir").is_dir);
    s.put("a/b/c", Bytes::from_static(b"bye"))
        .await
        .expect("overwrite");
    assert_eq!(&s.read("a/b/c", 100).await.unwrap()[..], b"bye");
    assert!(
        s.read("a/b/c", 2).await.is_err(),
        "read over the limit must fail"
    );
    assert!(s.read("a/b/missing", 10).await.unwrap_err().is_not_found());
    assert!(s.stat("nope").await.unwrap_err().is_not_found());
    assert!(
        s.get("nope", None)
            .await
            .err()
            .expect("get missing")
            .is_not_found()
    );
}

/// Ranged reads.
pub async fn ranges(s: &dyn Storage) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.put("r/obj", Bytes::from(data.clone())).await.unwrap();
    assert_eq!(collect(s, "r/obj", None).await, data, "whole object");
    let r = Some(ByteRange {
        start: 10,
        len: Some(5),
    });
    assert_eq!(collect(s, "r/obj", r).await, &data[10..15]);
    let r = Some(ByteRange {
        start: 1_500_000,
        len: None,
    });
    assert_eq!(collect(s, "r/obj", r).await, &data[1_500_000..]);
    let obj = s
        .get(
            "r/obj",
            Some(ByteRange {
                start: 2,
                len: Some(1),
            }),
        )
        .await
        .unwrap();
    assert_eq!(obj.size, data.len() as u64, "size is the whole object's");
    assert!(
        s.get(
            "r/obj",
            Some(ByteRange {
                start: 3_000_001,
                len: None
            })
        )
        .await
        .is_err()
    );
}

/// `list` names immediate children; `delete` removes trees.
pub async fn list_delete(s: &dyn Storage) {
    s.put("l/x/1", Bytes::from_static(b"1")).await.unwrap();
    s.put("l/x/2", Bytes::from_static(b"2")).await.unwrap();
    s.put("l/y/z/3", Bytes::from_static(b"3")).await.unwrap();
    let mut names = s.list("l").await.unwrap();
    names.sort();
    assert_eq!(names, ["x", "y"]);
    let mut names = s.list("l/x").await.unwrap();
    names.sort();
    assert_eq!(names, ["1", "2"]);
    s.delete("l/x/1").await.unwrap();
    assert_eq!(s.list("l/x").await.unwrap(), ["2"]);
    s.delete("l/y").await.unwrap();
    assert!(s.stat("l/y/z/3").await.unwrap_err().is_not_found());
    assert!(s.delete("l/none").await.unwrap_err().is_not_found());
    assert!(s.list("l/none").await.unwrap_err().is_not_found());
    s.put("f/file", Bytes::from_static(b"1")).await.unwrap();
    s.put("f/dir/a", Bytes::from_static(b"2")).await.unwrap();
    s.put("f/other/deep/b", Bytes::from_static(b"3"))
        .await
        .unwrap();
    let mut names = s.list_folders("f").await.unwrap();
    names.sort();
    assert_eq!(names, ["dir", "other"], "folders only, not the file");
    assert!(s.list_folders("f/none").await.unwrap_err().is_not_found());
}

/// Writers append, report their size, and reopen at an offset discarding the tail.
pub async fn writer_append_and_resume(s: &dyn Storage) {
    let mut w = s.writer("w/data", 0).await.unwrap();
    w.write(Bytes::from_static(b"abc")).await.unwrap();
    w.write(Bytes::from(vec![b'd'; 5 << 20])).await.unwrap();
    assert_eq!(w.size(), 3 + (5 << 20));
    w.commit().await.unwrap();
    assert_eq!(s.stat("w/data").await.unwrap().size, 3 + (5 << 20));
    let mut w = s.writer("w/data", 3).await.unwrap();
    assert_eq!(w.size(), 3);
    w.write(Bytes::from_static(b"XYZ")).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(collect(s, "w/data", None).await, b"abcXYZ");
    assert!(
        s.writer("w/data", 100).await.is_err(),
        "offset beyond the end"
    );
}

/// `rename` moves and replaces.
pub async fn rename_replaces(s: &dyn Storage) {
    s.put("m/src", Bytes::from_static(b"new")).await.unwrap();
    s.put("m/dst/data", Bytes::from_static(b"old"))
        .await
        .unwrap();
    s.rename("m/src", "m/dst/data").await.unwrap();
    assert_eq!(&s.read("m/dst/data", 10).await.unwrap()[..], b"new");
    assert!(s.stat("m/src").await.unwrap_err().is_not_found());
    s.put("m/src2", Bytes::from_static(b"x")).await.unwrap();
    s.rename("m/src2", "m/deep/new/dir/data").await.unwrap();
    assert_eq!(&s.read("m/deep/new/dir/data", 10).await.unwrap()[..], b"x");
    // A missing source is not found, whether or not the destination's folder exists.
    assert!(
        s.rename("m/gone", "m/dst/data")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        s.rename("m/gone", "m/nowhere/data")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(&s.read("m/dst/data", 10).await.unwrap()[..], b"new");
}

/// Renames racing into a folder none of them finds: every one lands (a rename that lost the
/// race to make the folder is not mistaken for a missing source).
pub async fn concurrent_renames_into_a_new_folder(s: &dyn Storage) {
    let n = 64;
    for i in 0..n {
        s.put(&format!("race/src/{i}"), Bytes::from(format!("{i}")))
            .await
            .unwrap();
    }
    let moves = (0..n).map(|i| async move {
        s.rename_undurable(&format!("race/src/{i}"), &format!("race/new/deep/{i}"))
            .await
    });
    for (i, r) in futures::future::join_all(moves)
        .await
        .into_iter()
        .enumerate()
    {
        r.unwrap_or_else(|e| panic!("rename {i}: {e}"));
    }
    for i in 0..n {
        let got = s.read(&format!("race/new/deep/{i}"), 10).await.unwrap();
        assert_eq!(&got[..], format!("{i}").as_bytes());
    }
}

/// `rename_undurable` moves like `rename`; `prune_empty_folders` removes nothing that holds an
/// object, and leaves no listed object behind either way.
pub async fn pruning_keeps_what_holds_anything(s: &dyn Storage) {
    s.put("p/a/b/c/data", Bytes::from_static(b"x"))
        .await
        .unwrap();
    s.put("p/a/keep", Bytes::from_static(b"k")).await.unwrap();
    s.rename_undurable("p/a/b/c/data", "p/aside/data")
        .await
        .unwrap();
    assert_eq!(&s.read("p/aside/data", 10).await.unwrap()[..], b"x");
    s.prune_empty_folders("p/a/b/c", "p").await.unwrap();
    assert_eq!(s.list("p/a").await.unwrap(), vec!["keep".to_string()]);
    // A folder that holds an object stays, and so do its parents.
    s.put("p/a/b2/data", Bytes::from_static(b"y"))
        .await
        .unwrap();
    s.prune_empty_folders("p/a/b2", "p").await.unwrap();
    assert_eq!(&s.read("p/a/b2/data", 10).await.unwrap()[..], b"y");
}

/// No key escapes the root.
pub async fn refuses_escapes(s: &dyn Storage) {
    for bad in ["../x", "/etc/passwd", "a/../../x", "a//b", ""] {
        assert!(
            s.put(bad, Bytes::from_static(b"x")).await.is_err(),
            "put {bad}"
        );
        assert!(s.read(bad, 10).await.is_err(), "read {bad}");
    }
}
