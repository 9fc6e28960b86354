//! Prometheus metrics on the debug listener (`http.debug.prometheus`), read by Prometheus's own
//! Python parser after a skopeo push and pull and three failed sign-ins.

use std::process::Command;

use berth_oci::media_type::*;
use berth_test_support::net::free_port;
use berth_test_support::{curl::*, image::*, layout::*, serve::*, skopeo::*};
use serde_json::Value;

/// Parses OpenMetrics text with `prometheus_client`'s parser: every sample as
/// `[name, labels, value]`.
fn parse(text: &str) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    let script = r#"import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let out = berth_test_support::process::run_with_stdin(
        Command::new("python3").args(["-c", script]),
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the text: {}\n{text}",
        berth_test_support::data::text(&out.stderr)
    );
    let v: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    v
}

fn sample(
    all: &[(String, serde_json::Map<String, Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    all.iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn metrics_count_pushes_pulls_and_failed_sign_ins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", "secret"])
        .output()
        .unwrap();
    std::fs::write(&htpasswd, out.stdout).unwrap();
    let port = free_port();
    let yaml = format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\nauth:\n  htpasswd:\n    realm: r\n    path: {}\nhttp:\n  debug:\n    addr: 127.0.0.1:{port}\n    prometheus:\n      enabled: true\n",
        root.display(),
        htpasswd.display()
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, yaml).unwrap();
    // With sign-in required `/v2/` answers 401, so readiness is the log line.
    let srv = Server::launch(false, |p| {
        let mut c = berth_test_support::process::berth_cmd();
        c.args(["serve", "--addr", &format!("127.0.0.1:{p}"), "-c"])
            .arg(&cfg);
        c
    });
    let img = oci_image("amd64", 2, 50_000);
    let src = dir.path().join("src");
    let mut blobs = vec![&img.config];
    blobs.extend(img.layers.iter());
    write_layout(&src, &blobs, &[("t", OCI_MANIFEST, &img.manifest)]);
    let remote = format!("docker://{}/secret-team/app:v1", srv.host());
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds=alice:secret",
        &format!("oci:{}:t", src.display()),
        &remote,
    ]);
    let back = dir.path().join("back");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds=alice:secret",
        &remote,
        &format!("oci:{}:t", back.display()),
    ]);
    for _ in 0..3 {
        let r = srv
            .req("GET", "/v2/secret-team/app/tags/list")
            .arg("-u")
            .arg("alice:wrong")
            .send();
        assert_eq!(r.status, 401);
    }

    let r = Req::new("GET", format!("http://127.0.0.1:{port}/metrics")).send();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    let all = parse(&text);
    let put = sample(
        &all,
        "berth_http_requests_total",
        &[("route", "manifest"), ("method", "PUT"), ("status", "201")],
    );
    assert_eq!(put, 1.0, "one manifest pushed");
    let got = sample(
        &all,
        "berth_http_requests_total",
        &[("route", "manifest"), ("method", "GET"), ("status", "200")],
    );
    assert!(got >= 1.0, "the pull read the manifest: {got}");
    let blob_gets = sample(
        &all,
        "berth_http_requests_total",
        &[("route", "blob"), ("method", "GET"), ("status", "200")],
    );
    assert_eq!(blob_gets, 3.0, "config and two layers pulled");
    assert_eq!(
        sample(
            &all,
            "berth_auth_refusals_total",
            &[("reason", "bad_credentials")]
        ),
        3.0
    );
    let layers: usize = img.layers.iter().map(|l| l.size()).sum();
    assert!(sample(&all, "berth_http_received_bytes_total", &[]) >= layers as f64);
    assert!(sample(&all, "berth_http_sent_bytes_total", &[]) >= layers as f64);
    let count = sample(
        &all,
        "berth_http_request_duration_seconds_count",
        &[("route", "blob"), ("method", "GET")],
    );
    assert_eq!(count, 3.0, "each blob GET timed once");
    assert_eq!(sample(&all, "berth_build_info", &[]), 1.0);
    assert!(
        !text.contains("secret-team") && !text.contains("sha256"),
        "no repository or digest in a label"
    );
    // The main listener does not answer it.
    assert_eq!(srv.get("/metrics").status, 404);
}
