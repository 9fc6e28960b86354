//! What each config.yml key means to Berth: honoured, accepted with a warning (it has no
//! meaning here), or refused at start (Berth does not do what it asks, and ignoring it would
//! change what is served or who may write). A key in none of these is a mistake, refused with
//! its name; from the environment (where `REGISTRY_*` variables may be unrelated, such as the
//! ones Kubernetes sets for a service named `registry`) it is warned about instead.

use serde_json::Value;

/// How Berth treats one key (and, unless said otherwise, everything below it).
#[derive(Clone, Copy)]
enum Class {
    /// Read by Berth; its children are checked too.
    Honoured,
    /// Read by Berth with free-form children (`http.headers`).
    HonouredTree,
    /// No meaning for Berth: accepted, with this reason logged.
    Warn(&'static str),
    /// Berth does not do it: refused, with this reason.
    Refuse(&'static str),
    /// Refused when `check` says so (a value that asks for something Berth does not do),
    /// else honoured or harmless.
    Check(fn(&Value) -> Option<&'static str>),
}

use Class::*;

const NOT_YET: &str = "Berth does not do this yet; remove it";

/// Every key Berth knows, as a dotted path; `*` stands for any one key.
const KEYS: &[(&str, Class)] = &[
    ("version", Honoured),
    ("log", Honoured),
    ("log.level", Honoured),
    ("log.formatter", Honoured),
    (
        "log.fields",
        Warn("Berth's log lines carry their own fields"),
    ),
    (
        "log.accesslog",
        Warn("Berth's request logging follows log.level"),
    ),
    (
        "log.hooks",
        Refuse("Berth sends no mail on errors; remove it"),
    ),
    (
        "loglevel",
        Warn("deprecated in Distribution; use log.level"),
    ),
    ("storage", Honoured),
    ("storage.filesystem", Honoured),
    ("storage.filesystem.rootdirectory", Honoured),
    (
        "storage.filesystem.maxthreads",
        Warn("Berth bounds its own file system threads"),
    ),
    ("storage.s3", Honoured),
    ("storage.s3.bucket", Honoured),
    ("storage.s3.region", Honoured),
    ("storage.s3.regionendpoint", Honoured),
    ("storage.s3.forcepathstyle", Honoured),
    ("storage.s3.secure", Honoured),
    ("storage.s3.skipverify", Honoured),
    ("storage.s3.v4auth", Honoured),
    ("storage.s3.rootdirectory", Honoured),
    ("storage.s3.accesskey", Honoured),
    ("storage.s3.secretkey", Honoured),
    ("storage.s3.sessiontoken", Honoured),
    ("storage.s3.chunksize", Honoured),
    (
        "storage.s3.encrypt",
        Check(|v| {
            truthy(v).then_some("Berth does not ask S3 for server-side encryption; enable it on the bucket (default encryption) and remove the key")
        }),
    ),
    (
        "storage.s3.keyid",
        Check(|v| {
            (!blank(v)).then_some("Berth does not ask S3 for KMS encryption; set the bucket's default encryption and remove the key")
        }),
    ),
    (
        "storage.s3.storageclass",
        Check(|v| {
            (!blank(v) && !is(v, "STANDARD")).then_some("Berth writes the STANDARD storage class; use a bucket lifecycle rule for another and remove the key")
        }),
    ),
    (
        "storage.s3.objectacl",
        Check(|v| {
            (!blank(v) && !is(v, "private")).then_some(
                "Berth writes objects with the bucket's default (private) ACL; remove the key",
            )
        }),
    ),
    (
        "storage.s3.multipartcopychunksize",
        Warn("Berth copies objects with the store's own copy"),
    ),
    (
        "storage.s3.multipartcopymaxconcurrency",
        Warn("Berth copies objects with the store's own copy"),
    ),
    (
        "storage.s3.multipartcopythresholdsize",
        Warn("Berth copies objects with the store's own copy"),
    ),
    (
        "storage.s3.useragent",
        Warn("Berth sends its own user agent"),
    ),
    (
        "storage.s3.loglevel",
        Warn("use log.level (RUST_LOG) for Berth's S3 client"),
    ),
    ("storage.s3.usedualstack", Refuse(NOT_YET)),
    ("storage.s3.accelerate", Refuse(NOT_YET)),
    ("storage.delete", Honoured),
    ("storage.delete.enabled", Honoured),
    ("storage.redirect", Honoured),
    ("storage.redirect.disable", Honoured),
    ("storage.maintenance", Honoured),
    ("storage.maintenance.uploadpurging", Honoured),
    ("storage.maintenance.uploadpurging.enabled", Honoured),
    ("storage.maintenance.uploadpurging.age", Honoured),
    ("storage.maintenance.uploadpurging.interval", Honoured),
    (
        "storage.maintenance.uploadpurging.dryrun",
        Check(|v| truthy(v).then_some("Berth has no dry run of upload purging; remove it")),
    ),
    ("storage.maintenance.readonly", Honoured),
    ("storage.maintenance.readonly.enabled", Honoured),
    (
        "storage.cache",
        Warn("Berth keeps no blob descriptor cache: its index answers"),
    ),
    ("storage.tag", Warn("Berth bounds its own tag lookups")),
    (
        "storage.inmemory",
        Refuse("Berth stores in a folder or on S3"),
    ),
    (
        "storage.azure",
        Refuse("Berth stores in a folder or on S3 (S3-compatible stores work)"),
    ),
    (
        "storage.gcs",
        Refuse("Berth stores in a folder or on S3 (Google Cloud Storage's S3 interface works)"),
    ),
    ("storage.swift", Refuse("Berth stores in a folder or on S3")),
    ("storage.oss", Refuse("Berth stores in a folder or on S3")),
    (
        "storage.s3-aws",
        Refuse("Berth stores in a folder or on S3 (storage.s3)"),
    ),
    ("http", Honoured),
    ("http.addr", Honoured),
    (
        "http.relativeurls",
        Warn("Berth always answers with relative Location URLs, which every client follows"),
    ),
    (
        "http.secret",
        Warn("Berth keeps upload state in storage and signs nothing with it"),
    ),
    ("http.tls", Honoured),
    ("http.tls.certificate", Honoured),
    ("http.tls.key", Honoured),
    (
        "http.tls.clientcas",
        Refuse("Berth does not check client certificates yet; remove it"),
    ),
    (
        "http.tls.minimumtls",
        Check(|v| {
            (!blank(v) && !is(v, "tls1.2") && !is(v, "tls1.3"))
                .then_some("Berth speaks TLS 1.2 and 1.3 only; remove the key")
        }),
    ),
    ("http.tls.ciphersuites", Refuse(NOT_YET)),
    (
        "http.tls.letsencrypt",
        Refuse("Berth does not fetch certificates; give it certificate and key files"),
    ),
    ("http.headers", HonouredTree),
    (
        "http.host",
        Refuse("Berth answers with relative URLs and has no external host setting; remove it"),
    ),
    (
        "http.prefix",
        Refuse("Berth serves /v2/ at the root; put a proxy in front to serve it under a prefix"),
    ),
    (
        "http.net",
        Check(|v| (!blank(v) && !is(v, "tcp")).then_some("Berth listens on TCP only")),
    ),
    ("http.debug", Honoured),
    ("http.debug.addr", Honoured),
    ("http.debug.prometheus", Honoured),
    ("http.debug.prometheus.enabled", Honoured),
    ("http.debug.prometheus.path", Honoured),
    (
        "http.http2",
        Warn("Berth serves HTTP/1.1 and, over TLS, HTTP/2 by negotiation"),
    ),
    (
        "http.h2c",
        Warn("Berth serves HTTP/1.1 and, over TLS, HTTP/2 by negotiation"),
    ),
    (
        "http.draintimeout",
        Warn("Berth finishes requests in flight on SIGTERM, bounded by berth.idletimeout"),
    ),
    ("auth", Honoured),
    ("auth.htpasswd", Honoured),
    ("auth.htpasswd.realm", Honoured),
    ("auth.htpasswd.path", Honoured),
    ("auth.token", Honoured),
    ("auth.token.realm", Honoured),
    ("auth.token.service", Honoured),
    ("auth.token.issuer", Honoured),
    ("auth.token.rootcertbundle", Honoured),
    ("auth.token.jwks", Honoured),
    ("auth.token.autoredirect", Refuse(NOT_YET)),
    ("auth.token.signingalgorithms", Refuse(NOT_YET)),
    ("auth.builtin", Honoured),
    ("auth.builtin.config", Honoured),
    (
        "auth.silly",
        Refuse("Berth has no test-only authentication; use htpasswd"),
    ),
    (
        "middleware",
        Refuse(
            "Berth runs no storage or registry middleware (cloudfront, redirect): storage.redirect redirects to presigned URLs",
        ),
    ),
    (
        "notifications",
        Refuse("Berth sends no event notifications yet; remove the section"),
    ),
    (
        "redis",
        Warn("Berth uses no Redis: its index database holds what a cache would"),
    ),
    ("health", Warn("Berth runs no health checks yet")),
    (
        "proxy",
        Refuse("Berth is no pull-through cache yet; remove the proxy section"),
    ),
    (
        "validation",
        Refuse(
            "Berth validates manifests itself and has no URL allow or deny lists yet; remove the section",
        ),
    ),
    (
        "compatibility",
        Warn("Berth serves schema 1 manifests read-only and accepts no schema 1 push"),
    ),
    ("reporting", Warn("Berth reports to no error tracker")),
    ("berth", Honoured),
    ("berth.maxmanifestbytes", Honoured),
    ("berth.trustforwardedheaders", Honoured),
    ("berth.idletimeout", Honoured),
    ("database", Honoured),
    ("database.enabled", Honoured),
    ("database.dsn", Honoured),
    ("database.path", Honoured),
    ("gc", Honoured),
    ("gc.enabled", Honoured),
    ("gc.interval", Honoured),
    ("gc.grace", Honoured),
    ("gc.deleteuntagged", Honoured),
    ("gc.rate", Honoured),
    ("policies", Honoured),
];

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        ),
        Value::Number(n) => n.as_u64() != Some(0),
        _ => false,
    }
}

fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn is(v: &Value, s: &str) -> bool {
    v.as_str().is_some_and(|x| x.trim().eq_ignore_ascii_case(s))
}

fn class_of(path: &str) -> Option<Class> {
    KEYS.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(path))
        .map(|(_, c)| *c)
}

/// What a check found: warnings to log once logging is up, or the first refusal.
#[derive(Debug, Default)]
pub struct KeyReport {
    /// One sentence per key accepted without effect.
    pub warnings: Vec<String>,
}

/// Checks every key of `tree` (keys lower-cased). `strict`: a key Berth does not know is
/// refused (the file); else warned about (the environment).
pub fn check(tree: &Value, strict: bool, report: &mut KeyReport) -> anyhow::Result<()> {
    walk(tree, "", strict, report)
}

fn walk(node: &Value, path: &str, strict: bool, report: &mut KeyReport) -> anyhow::Result<()> {
    let Some(map) = node.as_object() else {
        return Ok(());
    };
    for (k, v) in map {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match class_of(&p) {
            Some(Honoured) => walk(v, &p, strict, report)?,
            Some(HonouredTree) => {}
            Some(Warn(why)) => report
                .warnings
                .push(format!("config key {p} has no effect: {why}")),
            Some(Refuse(why)) => anyhow::bail!("config key {p} is not supported: {why}"),
            Some(Check(f)) => {
                if let Some(why) = f(v) {
                    anyhow::bail!("config key {p} is not supported with the value {v}: {why}");
                }
            }
            None if strict => anyhow::bail!(
                "unknown config key {p}: Berth does not know it (a typo?); README's configuration table lists the keys"
            ),
            None => report.warnings.push(format!(
                "REGISTRY_* variable for unknown config key {p} ignored"
            )),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> anyhow::Result<KeyReport> {
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        let mut r = KeyReport::default();
        check(&v, true, &mut r)?;
        Ok(r)
    }

    #[test]
    fn debians_default_config_starts_with_warnings() {
        let r = run(include_str!("../tests/data/debian-config.yml")).unwrap();
        let w = r.warnings.join("\n");
        assert!(
            w.contains("log.fields") && w.contains("storage.cache") && w.contains("health"),
            "{w}"
        );
    }

    #[test]
    fn unknown_and_unsupported_keys_are_refused_with_their_name() {
        let e = run("storage:\n  fileystem:\n    rootdirectory: /x\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("storage.fileystem") && e.contains("unknown"),
            "{e}"
        );
        let e = run("proxy:\n  remoteurl: https://registry-1.docker.io\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy") && e.contains("not supported"), "{e}");
        let e = run("storage:\n  s3:\n    bucket: b\n    encrypt: true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.s3.encrypt"), "{e}");
        assert!(run("storage:\n  s3:\n    bucket: b\n    encrypt: false\n").is_ok());
        let e = run("notifications:\n  endpoints: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("notifications"), "{e}");
        assert!(run("http:\n  headers:\n    X-Anything: [a]\n").is_ok());
        // From the environment an unknown key is only warned about (Kubernetes sets
        // REGISTRY_PORT for a service named registry).
        let v: Value = serde_json::json!({"port": "tcp://10.0.0.1:5000"});
        let mut r = KeyReport::default();
        check(&v, false, &mut r).unwrap();
        assert_eq!(r.warnings.len(), 1);
    }
}
